import { createConnection, type Socket } from 'node:net';

/** One connect attempt to a UNIX socket; callers retry while the listener is not there yet. */
export function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
