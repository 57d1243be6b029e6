import { XdrError } from './xdr.js';

/** Program numbers: every packet names the RPC program its procedure belongs to. */
export const Program = {
  REMOTE: 0x20008086,
  /** libvirt's QEMU-specific program (qemu_protocol.x): monitor passthrough. */
  QEMU: 0x20008087,
  KEEPALIVE: 0x6b656570,
} as const;

export const PROTOCOL_VERSION = 1;

export const PacketType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
  STREAM_HOLE: 6,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

export const PacketStatus = {
  OK: 0,
  ERROR: 1,
  CONTINUE: 2,
} as const;
export type PacketStatus = (typeof PacketStatus)[keyof typeof PacketStatus];

export interface PacketHeader {
  program: number;
  version: number;
  procedure: number;
  type: PacketType;
  serial: number;
  status: PacketStatus;
}

export interface Packet {
  header: PacketHeader;
  payload: Buffer;
}

const LENGTH_BYTES = 4;
const HEADER_BYTES = 24;
/**
 * The daemon never sends more than VIR_NET_MESSAGE_MAX (16 MiB, 32 MiB in newer releases); a
 * larger length means we lost framing, so the connection is dropped rather than the bytes buffered.
 */
const MAX_PACKET_BYTES = 32 * 1024 * 1024 + LENGTH_BYTES;
/**
 * Stream data per packet. The daemon sends downloads in chunks of this size
 * (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX), and every daemon version accepts packets this large.
 */
export const STREAM_CHUNK_BYTES = 256 * 1024;

/** Encodes a whole packet (length word, header, payload) in one buffer, ready to write. */
export function encodePacket(header: PacketHeader, payload?: Uint8Array): Buffer {
  const bodyLength = payload?.length ?? 0;
  const total = LENGTH_BYTES + HEADER_BYTES + bodyLength;
  const out = Buffer.allocUnsafe(total);
  out.writeUInt32BE(total, 0);
  out.writeUInt32BE(header.program, 4);
  out.writeUInt32BE(header.version, 8);
  out.writeInt32BE(header.procedure, 12);
  out.writeInt32BE(header.type, 16);
  out.writeUInt32BE(header.serial, 20);
  out.writeInt32BE(header.status, 24);
  if (payload) out.set(payload, LENGTH_BYTES + HEADER_BYTES);
  return out;
}

function decodeHeader(buf: Buffer): PacketHeader {
  return {
    program: buf.readUInt32BE(4),
    version: buf.readUInt32BE(8),
    procedure: buf.readInt32BE(12),
    type: buf.readInt32BE(16) as PacketType,
    serial: buf.readUInt32BE(20),
    status: buf.readInt32BE(24) as PacketStatus,
  };
}

/**
 * Reassembles packets from socket chunks. Socket reads split and merge packets arbitrarily,
 * so chunks are queued until a whole length-prefixed packet is available.
 */
export class PacketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Packet[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const packets: Packet[] = [];
    for (;;) {
      if (this.buffered < LENGTH_BYTES) break;
      const length = this.peekLength();
      if (length < LENGTH_BYTES + HEADER_BYTES || length > MAX_PACKET_BYTES) {
        throw new XdrError(`invalid packet length ${length}`);
      }
      if (this.buffered < length) break;
      const raw = this.take(length);
      packets.push({ header: decodeHeader(raw), payload: raw.subarray(LENGTH_BYTES + HEADER_BYTES) });
    }
    return packets;
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= LENGTH_BYTES) return first.readUInt32BE(0);
    return this.take(LENGTH_BYTES, false).readUInt32BE(0);
  }

  private take(n: number, consume = true): Buffer {
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.chunks.shift();
        else this.chunks[0] = first.subarray(n);
      }
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      let i = 0;
      while (filled < n) {
        const c = this.chunks[i++] as Buffer;
        const part = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, part);
        filled += part;
      }
      if (consume) this.consume(n);
    }
    if (consume) this.buffered -= n;
    return out;
  }

  private consume(n: number): void {
    while (n > 0) {
      const c = this.chunks[0] as Buffer;
      if (c.length <= n) {
        this.chunks.shift();
        n -= c.length;
      } else {
        this.chunks[0] = c.subarray(n);
        n = 0;
      }
    }
  }
}
