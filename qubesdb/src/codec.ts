import { QubesDbProtocolError } from './errors.js';
import { isValidPath, isValidValue } from './path.js';
import { DATA_LEN_OFFSET, HEADER_SIZE, PATH_OFFSET, QDB_MAX_DATA, QDB_MAX_PATH, QdbMsg } from './protocol.js';

export interface QdbMessage {
  readonly type: QdbMsg;
  readonly path: string;
  readonly data: Buffer;
}

const EMPTY = Buffer.alloc(0);
/** Messages whose data is a value, which may not hold NUL bytes. */
const VALUE_TYPES = new Set([QdbMsg.CmdWrite, QdbMsg.RespRead, QdbMsg.RespMultiread]);

/** One message on the wire; refuses what no conforming peer could read. */
export function encodeMessage(type: QdbMsg, path: string, data: Buffer | string = EMPTY): Buffer {
  const value = typeof data === 'string' ? Buffer.from(data) : data;
  if (!isValidPath(path)) throw new RangeError(`invalid QubesDB path ${JSON.stringify(path)}`);
  if (value.length >= QDB_MAX_DATA) throw new RangeError(`QubesDB value too long (${value.length} bytes)`);
  if (!isValidValue(value)) throw new RangeError('QubesDB values cannot hold NUL bytes');
  const frame = Buffer.alloc(HEADER_SIZE + value.length);
  frame.writeUInt8(type, 0);
  frame.write(path, PATH_OFFSET, 'latin1');
  frame.writeUInt32LE(value.length, DATA_LEN_OFFSET);
  value.copy(frame, HEADER_SIZE);
  return frame;
}

export interface QdbHeader {
  readonly type: QdbMsg;
  readonly path: string;
  readonly dataLen: number;
}

/**
 * Checks a received header against upstream's limits: a known type, a
 * NUL-terminated path of allowed characters (bytes after the NUL are ignored,
 * as upstream's own clients leave old bytes there), a data length below
 * QDB_MAX_DATA.
 */
export function decodeHeader(header: Buffer): QdbHeader {
  if (header.length !== HEADER_SIZE) throw new QubesDbProtocolError(`header of ${header.length} bytes`);
  const type = header.readUInt8(0);
  if (!(type in QdbMsg)) throw new QubesDbProtocolError(`unknown message type ${type}`);
  const field = header.subarray(PATH_OFFSET, PATH_OFFSET + QDB_MAX_PATH);
  const end = field.indexOf(0);
  if (end < 0) throw new QubesDbProtocolError('path is not NUL-terminated');
  const path = field.toString('latin1', 0, end);
  if (!isValidPath(path)) throw new QubesDbProtocolError(`invalid path ${JSON.stringify(path)}`);
  const dataLen = header.readUInt32LE(DATA_LEN_OFFSET);
  if (dataLen >= QDB_MAX_DATA) throw new QubesDbProtocolError(`data length ${dataLen} over the limit`);
  return { type: type as QdbMsg, path, dataLen };
}

/**
 * Splits a byte stream into messages. It never holds more than one header
 * and one value (under 3.2 KiB): a header is checked as soon as it is
 * complete, before any of its data is kept. After an error it accepts nothing.
 */
export class QdbDecoder {
  #pending: Buffer[] = [];
  #pendingLength = 0;
  #header: QdbHeader | undefined;
  #failed: QubesDbProtocolError | undefined;

  /** Bytes held for an incomplete message. */
  get buffered(): number {
    return this.#pendingLength;
  }

  /** Feeds received bytes; returns the messages they completed, or throws on the first malformed one. */
  push(chunk: Buffer): QdbMessage[] {
    if (this.#failed) throw this.#failed;
    const out: QdbMessage[] = [];
    let offset = 0;
    try {
      while (offset < chunk.length) {
        const need = (this.#header ? this.#header.dataLen : HEADER_SIZE) - this.#pendingLength;
        const take = Math.min(need, chunk.length - offset);
        if (take > 0) {
          this.#pending.push(chunk.subarray(offset, offset + take));
          this.#pendingLength += take;
          offset += take;
        }
        if (!this.#complete()) break;
        const bytes = Buffer.concat(this.#pending, this.#pendingLength);
        this.#pending = [];
        this.#pendingLength = 0;
        let data = EMPTY;
        if (this.#header) {
          data = bytes;
        } else {
          this.#header = decodeHeader(bytes);
          if (this.#header.dataLen > 0) continue;
        }
        const { type, path } = this.#header;
        this.#header = undefined;
        if (VALUE_TYPES.has(type) && !isValidValue(data))
          throw new QubesDbProtocolError(`value of ${path} holds a NUL byte`);
        out.push({ type, path, data });
      }
    } catch (error) {
      this.#failed = error instanceof QubesDbProtocolError ? error : new QubesDbProtocolError(String(error));
      throw this.#failed;
    }
    return out;
  }

  #complete(): boolean {
    return this.#pendingLength === (this.#header ? this.#header.dataLen : HEADER_SIZE);
  }
}
