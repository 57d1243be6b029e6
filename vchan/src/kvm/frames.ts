/**
 * The framing of the one virtio-serial channel between the admin domain and a KVM guest,
 * which carries every vchan of that guest. A frame is a 9-byte header (type u8, stream id
 * u32 BE, payload length u32 BE) and its payload:
 *
 *   HELLO  id 0   nonce (8 bytes) + reply flag (u8): a new session of the sender (on each
 *                 new link, and after the other's bytes made no sense); the receiver drops
 *                 every stream of the sender's previous session
 *   OPEN   id     port u32 + window u32 + domain (UTF-8): the opener (vchan client) asks for
 *                 a server on `port`; window = bytes the opener can buffer (its read ring).
 *                 From the guest, domain is the one it wants to reach ("0": the admin
 *                 domain; any other: the host relays to that guest). From the host, domain
 *                 is who the stream comes from ("0", or the relayed guest), as the guest's
 *                 server only takes clients of the domain it listens for.
 *   ACCEPT id     window u32: the server took the client; data may flow both ways
 *   REFUSE id     no server is waiting on that port (the client retries until its timeout)
 *   DATA   id     bytes, never more than the credit the receiver granted
 *   CREDIT id     u32: the receiver consumed that many bytes; the sender may send as many more
 *   CLOSE  id     the stream is gone for both ends (libvchan has no half-close)
 *
 * Ids are chosen by the opener; the host's have the top bit clear, the guest's set, so both
 * ends can open at once without a clash, and frames of a closed stream are recognisably stale.
 */
export const FrameType = {
  HELLO: 1,
  OPEN: 2,
  ACCEPT: 3,
  REFUSE: 4,
  DATA: 5,
  CREDIT: 6,
  CLOSE: 7,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  readonly type: FrameType;
  readonly id: number;
  readonly payload: Buffer;
}

export const HEADER_SIZE = 9;
/** Largest DATA payload; bigger writes are split, so one stream cannot hold the channel for long. */
export const MAX_DATA = 64 * 1024;
/**
 * Payload sizes each type may have (smallest, largest), as laid out above; any other size is a
 * corrupt stream, not a frame, and the receiver never reads past a short payload.
 */
const PAYLOAD_SIZE: Record<FrameType, readonly [number, number]> = {
  [FrameType.HELLO]: [9, 9],
  [FrameType.OPEN]: [8, MAX_DATA],
  [FrameType.ACCEPT]: [4, 4],
  [FrameType.REFUSE]: [0, 0],
  [FrameType.DATA]: [0, MAX_DATA],
  [FrameType.CREDIT]: [4, 4],
  [FrameType.CLOSE]: [0, 0],
};

export class FrameError extends Error {
  override name = 'FrameError';
}

export function encodeFrame(type: FrameType, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(id >>> 0, 1);
  header.writeUInt32BE(payload.length, 5);
  return payload.length === 0 ? header : Buffer.concat([header, payload]);
}

export function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}

/**
 * Splits a byte stream into frames; keeps partial frames across chunks. A frame arriving in
 * many small chunks (the guest reads its port 4 KiB at a time) is joined once, when its last
 * byte is there, not again with every chunk.
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** Bytes the next frame needs before it can be parsed: its header, then header and payload. */
  private needed = HEADER_SIZE;

  push(chunk: Buffer): Frame[] {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    if (this.pendingLength < this.needed) return [];
    const frames: Frame[] = [];
    let buf = this.pending.length === 1 ? chunk : Buffer.concat(this.pending, this.pendingLength);
    let offset = 0;
    this.needed = HEADER_SIZE;
    while (buf.length - offset >= HEADER_SIZE) {
      const type = buf.readUInt8(offset);
      const length = buf.readUInt32BE(offset + 5);
      if (type < FrameType.HELLO || type > FrameType.CLOSE)
        throw new FrameError(`unknown frame type ${type}`);
      const [min, max] = PAYLOAD_SIZE[type as FrameType];
      if (length < min || length > max) {
        throw new FrameError(`frame of type ${type} with ${length} bytes of payload (${min} to ${max})`);
      }
      if (buf.length - offset < HEADER_SIZE + length) {
        this.needed = HEADER_SIZE + length;
        break;
      }
      const id = buf.readUInt32BE(offset + 1);
      const start = offset + HEADER_SIZE;
      frames.push({ type: type as FrameType, id, payload: buf.subarray(start, start + length) });
      offset = start + length;
    }
    buf = buf.subarray(offset);
    this.pending = buf.length > 0 ? [buf] : [];
    this.pendingLength = buf.length;
    return frames;
  }

  reset(): void {
    this.pending = [];
    this.pendingLength = 0;
    this.needed = HEADER_SIZE;
  }
}
