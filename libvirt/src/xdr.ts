/**
 * XDR (RFC 4506): big-endian 4-byte units, variable-length items carry a 4-byte length and are
 * zero-padded to a multiple of 4. Only what libvirt's remote protocol uses is here.
 */

const pad = (n: number): number => (4 - (n % 4)) % 4;

export class XdrError extends Error {
  override name = 'XdrError';
}

export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    // Doubling from an empty buffer would never grow.
    let size = Math.max(this.buf.length, 8) * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(v: number): this {
    this.reserve(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  uint(v: number): this {
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  hyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  uhyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  double(v: number): this {
    this.reserve(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
    return this;
  }

  fixedOpaque(data: Uint8Array, length: number): this {
    if (data.length !== length) throw new XdrError(`fixed opaque needs ${length} bytes, got ${data.length}`);
    this.reserve(length + pad(length));
    this.buf.set(data, this.pos);
    this.pos += length;
    this.zeros(pad(length));
    return this;
  }

  opaque(data: Uint8Array): this {
    this.uint(data.length);
    return this.fixedOpaque(data, data.length);
  }

  string(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    this.uint(len);
    this.reserve(len + pad(len));
    this.buf.write(s, this.pos, 'utf8');
    this.pos += len;
    this.zeros(pad(len));
    return this;
  }

  /** XDR optional-data (`T *`): a bool "present" followed by the value. */
  optional<T>(v: T | null | undefined, write: (w: this, v: T) => void): this {
    if (v === null || v === undefined) return this.bool(false);
    this.bool(true);
    write(this, v);
    return this;
  }

  array<T>(items: readonly T[], write: (w: this, v: T) => void): this {
    this.uint(items.length);
    for (const item of items) write(this, item);
    return this;
  }

  private zeros(n: number): void {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  get length(): number {
    return this.pos;
  }

  /** A view of the bytes written so far (not a copy). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class XdrReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  private take(n: number): number {
    const at = this.pos;
    if (at + n > this.buf.length) {
      throw new XdrError(`XDR underflow: need ${n} bytes at offset ${at}, have ${this.buf.length - at}`);
    }
    this.pos += n;
    return at;
  }

  int(): number {
    return this.buf.readInt32BE(this.take(4));
  }

  uint(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  hyper(): bigint {
    return this.buf.readBigInt64BE(this.take(8));
  }

  uhyper(): bigint {
    return this.buf.readBigUInt64BE(this.take(8));
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`invalid XDR bool ${v}`);
    return v === 1;
  }

  double(): number {
    return this.buf.readDoubleBE(this.take(8));
  }

  fixedOpaque(length: number): Buffer {
    const at = this.take(length + pad(length));
    return Buffer.from(this.buf.subarray(at, at + length));
  }

  opaque(max = Infinity): Buffer {
    const len = this.uint();
    if (len > max) throw new XdrError(`opaque of ${len} bytes exceeds limit ${max}`);
    return this.fixedOpaque(len);
  }

  string(max = Infinity): string {
    const len = this.uint();
    if (len > max) throw new XdrError(`string of ${len} bytes exceeds limit ${max}`);
    const at = this.take(len + pad(len));
    return this.buf.toString('utf8', at, at + len);
  }

  optional<T>(read: (r: this) => T): T | null {
    return this.bool() ? read(this) : null;
  }

  array<T>(read: (r: this) => T, max = Infinity): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`array of ${n} items exceeds limit ${max}`);
    // Each item takes at least 4 bytes, so a corrupt count cannot make us allocate wildly.
    if (n * 4 > this.remaining)
      throw new XdrError(`array of ${n} items cannot fit in ${this.remaining} bytes`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Rejects trailing garbage, which would mean our idea of the message layout is wrong. */
  end(): void {
    if (this.remaining !== 0) throw new XdrError(`${this.remaining} unexpected trailing bytes`);
  }
}
