import type { Duplex } from 'node:stream';
import { encodeMessage, QdbDecoder, type QdbMessage } from './codec.js';
import { QubesDbProtocolError } from './errors.js';
import type { QdbMsg } from './protocol.js';

/** Replies and notifications a peer leaves unread beyond this end its connection. */
export const MAX_PENDING_OUTPUT = 1 << 20;

/**
 * Messages over one byte stream (a vchan or a local socket). A peer that
 * sends a malformed message, or stops reading while we have more than
 * MAX_PENDING_OUTPUT bytes for it, loses the connection; while our replies
 * wait for it to read, its further requests wait too.
 */
export class QdbConnection {
  readonly #stream: Duplex;
  readonly #decoder = new QdbDecoder();
  #closed = false;
  readonly closed: Promise<Error | undefined>;

  constructor(stream: Duplex, onMessage: (message: QdbMessage, connection: QdbConnection) => void) {
    this.#stream = stream;
    this.closed = new Promise((resolve) => {
      let failure: Error | undefined;
      stream.on('error', (error: Error) => (failure ??= error));
      stream.on('close', () => {
        this.#closed = true;
        resolve(failure);
      });
      stream.on('end', () => stream.end());
      stream.on('data', (chunk: Buffer) => {
        try {
          for (const message of this.#decoder.push(chunk)) {
            if (this.#closed) return;
            onMessage(message, this);
          }
        } catch (error) {
          failure ??= error instanceof Error ? error : new QubesDbProtocolError(String(error));
          this.close();
          return;
        }
        if (stream.writableNeedDrain && !stream.isPaused()) {
          stream.pause();
          stream.once('drain', () => stream.resume());
        }
      });
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  send(type: QdbMsg, path: string, data?: Buffer | string): void {
    if (this.#closed) return;
    this.#stream.write(encodeMessage(type, path, data));
    if (this.#stream.writableLength > MAX_PENDING_OUTPUT) {
      this.#stream.destroy(new QubesDbProtocolError('peer does not read its messages'));
    }
  }

  /** Ends the connection now; what is queued for the peer is dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream.destroy();
  }
}
