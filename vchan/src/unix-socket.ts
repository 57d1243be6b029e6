import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';

/** Linux's O_PATH, which node:fs does not export: an fd that names a file without opening it. */
export const O_PATH = 0o10000000;

/**
 * One connect attempt to a UNIX socket; callers retry while the listener is not there yet.
 * The socket may be named in a directory a domain writes, and connect(2) follows a symlink put
 * there to any socket of the host (another domain's, libvirtd's): the name is taken without
 * following it, and the socket reached through that fd. Synchronously, as connect(2) is: a name
 * lookup has no I/O to wait for, and a connect must not queue behind slow file operations.
 */
export async function connectOnce(path: string): Promise<Socket> {
  const fd = openSync(path, O_PATH | constants.O_NOFOLLOW);
  try {
    if (fstatSync(fd).isSymbolicLink())
      throw Object.assign(new Error(`${path} is a symbolic link`), { code: 'ELOOP' });
    return await new Promise((resolve, reject) => {
      const socket = createConnection(`/proc/self/fd/${fd}`);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  } finally {
    closeSync(fd);
  }
}
