import type { Readable, Writable } from 'node:stream';
import { decodeHeader, encodeHeader } from './codec.js';
import { MAX_DATA_CHUNK_V3, MAX_QREXEC_CMD_LEN, MSG_HEADER_SIZE } from './constants.js';
import { QrexecProtocolError } from './errors.js';

export interface QrexecMessage {
  readonly type: number;
  readonly payload: Buffer;
}

/** Largest payload any qrexec message legitimately carries (a command line plus its exec_params). */
const MAX_MESSAGE_LEN = Math.max(MAX_QREXEC_CMD_LEN, MAX_DATA_CHUNK_V3) + 256;

/**
 * Reads whole messages (msg_header + payload) from a byte stream. Partial
 * messages stay in the stream's own buffer until complete.
 */
export class MessageReader {
  #eof = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(private readonly stream: Readable) {
    // One lasting 'readable' listener: adding a listener while bytes are buffered
    // emits 'readable' again at once, which would spin on a partial message.
    stream.on('readable', () => this.#notify());
    stream.on('end', () => {
      this.#eof = true;
      this.#notify();
    });
    stream.on('close', () => {
      this.#eof = true;
      this.#notify();
    });
    stream.on('error', (error: Error) => {
      this.#error = error;
      this.#notify();
    });
  }

  /**
   * The next message, or null at a clean end of stream between messages. A payload longer than
   * `maxLen` is refused from its header, as upstream does, before any of it is waited for.
   */
  async next(maxLen: number = MAX_MESSAGE_LEN): Promise<QrexecMessage | null> {
    const head = await this.#readExact(MSG_HEADER_SIZE);
    if (!head) return null;
    const { type, len } = decodeHeader(head);
    if (len > maxLen) throw new QrexecProtocolError(`message 0x${type.toString(16)} too long (${len})`);
    const payload = len === 0 ? Buffer.alloc(0) : await this.#readExact(len);
    if (!payload) throw new QrexecProtocolError(`stream ended inside message 0x${type.toString(16)}`);
    return { type, payload };
  }

  /** Like next(), but the end of the stream is an error. */
  async expect(): Promise<QrexecMessage> {
    const message = await this.next();
    if (!message) throw new QrexecProtocolError('peer closed the channel');
    return message;
  }

  async #readExact(size: number): Promise<Buffer | null> {
    for (;;) {
      // What arrived before an error is still read: a failed write (the peer closed) errors the
      // stream after the peer's last message, its exit code, was already buffered.
      const chunk = this.stream.read(size) as Buffer | null;
      if (chunk !== null) {
        if (chunk.length < size) throw new QrexecProtocolError('stream ended inside a message');
        return chunk;
      }
      if (this.#error) throw this.#error;
      if (this.#eof || this.stream.destroyed) {
        if (this.stream.readableLength > 0) throw new QrexecProtocolError('stream ended inside a message');
        return null;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** Payloads up to this size are copied behind their header: one write, one frame on every transport. */
const COPY_BELOW = 4096;

/** Writes one message; resolves when the stream can take more (backpressure of the vchan ring). */
export async function writeMessage(
  stream: Writable,
  type: number,
  payload: Buffer = Buffer.alloc(0),
): Promise<void> {
  if (stream.destroyed || stream.writableEnded) throw new QrexecProtocolError('channel closed');
  const header = encodeHeader(type, payload.length);
  let ok: boolean;
  if (payload.length <= COPY_BELOW) {
    ok = stream.write(Buffer.concat([header, payload]));
  } else {
    // A data chunk is not copied: header and payload are queued together (the socket transport
    // sends them in one writev). Both writes happen in this tick, so concurrent writers (stdout
    // and stderr) never interleave inside a message.
    stream.cork();
    stream.write(header);
    ok = stream.write(payload);
    stream.uncork();
  }
  if (!ok) await waitForDrain(stream);
}

function waitForDrain(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      stream.off('error', onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new QrexecProtocolError('channel closed while writing'));
    };
    stream.on('drain', onDrain);
    stream.on('close', onClose);
    stream.on('error', onClose);
  });
}
