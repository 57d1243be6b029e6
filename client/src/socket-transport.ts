import { createConnection, type Socket } from 'node:net';

import type { ByteSource, Transport, UploadOptions } from './transport.js';
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

  /**
   * Writes the header (and `call.payload`), then `source` chunk by chunk, waiting for the socket to drain
   * whenever its buffer is full, and half-closes. The reply is read all along: qubesd answers an error
   * (a stopped VM, a wrong size) as soon as it knows, and then no further byte is worth sending.
   */
  async upload(call: AdminCall, source: ByteSource, options: UploadOptions = {}): Promise<Buffer> {
    const { signal, onProgress } = options;
    signal?.throwIfAborted();
    const socket = await this.connect();
    const chunks: Buffer[] = [];
    let stopped = false;
    let failure: unknown;
    const reply = new Promise<Buffer>((resolve) => {
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      // Either way the reply is complete: the server half-closed, or the connection is gone.
      socket.once('end', () => resolve(Buffer.concat(chunks)));
      socket.once('close', () => resolve(Buffer.concat(chunks)));
    });
    const stop = new Promise<void>((resolve) => {
      const done = () => {
        stopped = true;
        resolve();
      };
      socket.once('end', done);
      socket.once('close', done);
    });
    socket.on('error', (err) => {
      // EPIPE / ECONNRESET: the server hung up, which its reply (or the lack of one) explains.
      if (!isConnectionGone(err)) failure ??= err;
    });
    const onAbort = () => socket.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      socket.write(encodeRequest(call));
      let sent = 0;
      for await (const chunk of source) {
        if (stopped) break;
        const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
        if (data.length === 0) continue;
        if (!socket.write(data)) await Promise.race([once(socket, 'drain'), stop]);
        sent += data.length;
        onProgress?.(sent);
      }
      if (!stopped) socket.end();
      const body = await reply;
      signal?.throwIfAborted();
      if (failure !== undefined) throw failure;
      return body;
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

function isConnectionGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

/** Resolves on the next `event`; unlike events.once it never rejects (errors are handled elsewhere). */
function once(socket: Socket, event: string): Promise<void> {
  return new Promise((resolve) => socket.once(event, () => resolve()));
}
