import { createConnection, type Socket } from 'node:net';

import type { Transport } from './transport.js';
import { encodeRequest, type AdminCall } from './wire.js';

export const DEFAULT_SOCKET_PATH = '/var/run/qubesd.sock';

/** qubesd's UNIX socket, one connection per call, exactly as upstream's dom0 client uses it. */
export class SocketTransport implements Transport {
  constructor(readonly path: string = DEFAULT_SOCKET_PATH) {}

  async call(call: AdminCall): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.stream(call)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  async *stream(call: AdminCall, signal?: AbortSignal): AsyncIterable<Buffer> {
    if (signal?.aborted) return;
    const socket = await this.connect();
    const onAbort = () => socket.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // The server only acts after EOF, so the request must be followed by a half-close.
      socket.end(encodeRequest(call));
      for await (const chunk of socket) {
        if (signal?.aborted) return;
        yield chunk as Buffer;
      }
    } catch (err) {
      // A reset after the server aborted the connection carries no more meaning than EOF does.
      if (!isConnectionReset(err) && !signal?.aborted) throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
    }
  }

  private connect(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.path);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }
}

function isConnectionReset(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
}
