import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

/** Errors that only mean "the peer went away"; libvchan reports those as a closed channel, not a failure. */
const PEER_GONE = new Set(['EPIPE', 'ECONNRESET']);

export function isPeerGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return code !== undefined && PEER_GONE.has(code);
}

/**
 * A vchan's ring keeps what the peer wrote before it went away, and so does the kernel's socket
 * buffer; but node closes a socket on its first failed write, and a write fails (EPIPE) as soon as
 * the peer's process has died, with the peer's last bytes still unread in the kernel: a disposable
 * killed right after it sent its exit code took the exit code with it whenever the caller wrote
 * before reading. Here a write to a gone peer is reported to `gone` and counts as written (the
 * ring nobody reads), and the socket stays open to be read to its end.
 */
export function readPastGonePeer(socket: Socket, gone?: () => void): void {
  const write = socket._write.bind(socket);
  const writev = socket._writev?.bind(socket);
  const settle =
    (callback: (error?: Error | null) => void) =>
    (error?: Error | null): void => {
      if (!isPeerGone(error)) {
        callback(error);
        return;
      }
      gone?.();
      callback();
    };
  socket._write = (chunk, encoding, callback) => write(chunk, encoding, settle(callback));
  if (writev) socket._writev = (chunks, callback) => writev(chunks, settle(callback));
}

/**
 * Fails a write that found the peer gone, but only once the stream's reader has taken the peer's
 * last bytes: a failed write destroys a node stream, and with it what its readable side still
 * buffers, where libvchan's failed write leaves the ring readable. Until then the write waits, as
 * a write to a full ring does (a reader that stopped reading stops its writer); with the peer's
 * EOF queued (`eofQueued`) and nothing before it, it fails at once.
 */
export function failOnceRead(
  stream: Readable,
  eofQueued: boolean,
  callback: (error?: Error | null) => void,
  error: () => Error,
): void {
  if (stream.readableEnded || stream.destroyed || (eofQueued && stream.readableLength === 0)) {
    callback(error());
    return;
  }
  const fail = (): void => {
    stream.off('end', fail);
    stream.off('close', fail);
    callback(error());
  };
  stream.once('end', fail);
  stream.once('close', fail);
}
