import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRemoteError } from '../src/errors.js';
import { PacketReader, encodePacket, type PacketHeader } from '../src/packet.js';
import { STRING_MAX, readDomain } from '../src/procedures/handles.js';
import { readTypedParams } from '../src/procedures/typed-params.js';
import { XdrError, XdrReader, XdrWriter } from '../src/xdr.js';

/** One XDR item: how to write it, how to read it back, and the value it must read as. */
type Item =
  | { t: 'int'; v: number }
  | { t: 'uint'; v: number }
  | { t: 'hyper'; v: bigint }
  | { t: 'uhyper'; v: bigint }
  | { t: 'bool'; v: boolean }
  | { t: 'double'; v: number }
  | { t: 'string'; v: string }
  | { t: 'opaque'; v: Uint8Array }
  | { t: 'fixed'; v: Uint8Array }
  | { t: 'optional'; v: number | null }
  | { t: 'array'; v: string[] };

const item: fc.Arbitrary<Item> = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v) => ({ t: 'int' as const, v })),
  fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((v) => ({ t: 'uint' as const, v })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ t: 'hyper' as const, v })),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ t: 'uhyper' as const, v })),
  fc.boolean().map((v) => ({ t: 'bool' as const, v })),
  fc.double({ noNaN: true }).map((v) => ({ t: 'double' as const, v })),
  // Well-formed UTF-16 only: a lone surrogate has no UTF-8 form and cannot come back unchanged.
  fc.string({ unit: 'grapheme', maxLength: 20 }).map((v) => ({ t: 'string' as const, v })),
  fc.uint8Array({ maxLength: 20 }).map((v) => ({ t: 'opaque' as const, v })),
  fc.uint8Array({ maxLength: 20 }).map((v) => ({ t: 'fixed' as const, v })),
  fc.option(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })).map((v) => ({ t: 'optional' as const, v })),
  fc.array(fc.string({ maxLength: 6 }), { maxLength: 5 }).map((v) => ({ t: 'array' as const, v })),
);

function write(w: XdrWriter, it: Item): void {
  switch (it.t) {
    case 'int':
      return void w.int(it.v);
    case 'uint':
      return void w.uint(it.v);
    case 'hyper':
      return void w.hyper(it.v);
    case 'uhyper':
      return void w.uhyper(it.v);
    case 'bool':
      return void w.bool(it.v);
    case 'double':
      return void w.double(it.v);
    case 'string':
      return void w.string(it.v);
    case 'opaque':
      return void w.opaque(it.v);
    case 'fixed':
      return void w.fixedOpaque(it.v, it.v.length);
    case 'optional':
      return void w.optional(it.v, (x, v) => x.int(v));
    case 'array':
      return void w.array(it.v, (x, v) => x.string(v));
  }
}

function read(r: XdrReader, it: Item): unknown {
  switch (it.t) {
    case 'int':
      return r.int();
    case 'uint':
      return r.uint();
    case 'hyper':
      return r.hyper();
    case 'uhyper':
      return r.uhyper();
    case 'bool':
      return r.bool();
    case 'double':
      return r.double();
    case 'string':
      return r.string(STRING_MAX);
    case 'opaque':
      return new Uint8Array(r.opaque(64));
    case 'fixed':
      return new Uint8Array(r.fixedOpaque(it.v.length));
    case 'optional':
      return r.optional((x) => x.int());
    case 'array':
      return r.array((x) => x.string(64), 16);
  }
}

/** The RFC 4506 encoding of one item, written out by hand as the oracle for XdrWriter. */
function rfc(it: Item): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  const padded = (bytes: Uint8Array) =>
    Buffer.concat([Buffer.from(bytes), Buffer.alloc((4 - (bytes.length % 4)) % 4)]);
  const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), padded(Buffer.from(s))]);
  switch (it.t) {
    case 'int':
    case 'uint':
      return u32(it.v);
    case 'bool':
      return u32(it.v ? 1 : 0);
    case 'hyper':
    case 'uhyper': {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt.asUintN(64, it.v));
      return b;
    }
    case 'double': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(it.v);
      return b;
    }
    case 'string':
      return str(it.v);
    case 'opaque':
      return Buffer.concat([u32(it.v.length), padded(it.v)]);
    case 'fixed':
      return padded(it.v);
    case 'optional':
      return it.v === null ? u32(0) : Buffer.concat([u32(1), u32(it.v)]);
    case 'array':
      return Buffer.concat([u32(it.v.length), ...it.v.map(str)]);
  }
}

describe('XDR properties', () => {
  it('encodes every type byte-exactly as RFC 4506 and reads it back, whatever the initial buffer size', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 12 }), fc.nat(40), (items, initial) => {
        const w = new XdrWriter(initial);
        for (const it of items) write(w, it);
        const bytes = Buffer.from(w.bytes());
        expect(bytes).toEqual(Buffer.concat(items.map(rfc)));
        const r = new XdrReader(bytes);
        for (const it of items) expect(read(r, it)).toEqual(it.v);
        r.end();
      }),
    );
  });

  it('reads arbitrary or mutated bytes as values or as XdrError, never anything else', () => {
    const valid = fc.array(item, { minLength: 1, maxLength: 8 }).map((items) => {
      const w = new XdrWriter();
      for (const it of items) write(w, it);
      return { items, bytes: Buffer.from(w.bytes()) };
    });
    const mutated = fc
      .tuple(
        valid,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(),
      )
      .map(([{ items, bytes }, flips, cut]) => {
        for (const [at, b] of flips) if (bytes.length > 0) bytes[at % bytes.length] = b;
        return { items, bytes: bytes.subarray(0, bytes.length - (cut % 8)) };
      });
    const random = fc.tuple(fc.array(item, { minLength: 1, maxLength: 8 }), fc.uint8Array({ maxLength: 64 }));
    fc.assert(
      fc.property(
        fc.oneof(
          mutated,
          random.map(([items, b]) => ({ items, bytes: Buffer.from(b) })),
        ),
        ({ items, bytes }) => {
          const r = new XdrReader(bytes);
          try {
            for (const it of items) read(r, it);
            r.end();
          } catch (err) {
            expect(err).toBeInstanceOf(XdrError);
          }
        },
      ),
    );
  });

  it('checks a length against the bytes present before using it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 32 }), (n, rest) => {
        const bytes = Buffer.concat([new XdrWriter().uint(n).bytes(), rest]);
        fc.pre(n * 4 > rest.length);
        let reads = 0;
        const items = () =>
          new XdrReader(bytes).array((x) => {
            reads++;
            return x.int();
          });
        expect(items).toThrow(XdrError);
        expect(reads).toBe(0);
        fc.pre(n > rest.length);
        expect(() => new XdrReader(bytes).string()).toThrow(XdrError);
        expect(() => new XdrReader(bytes).opaque()).toThrow(XdrError);
      }),
    );
  });

  it('decodes remote_error, domains and typed parameters from hostile bytes as values or XdrError', () => {
    const decoders = [
      (r: XdrReader) => decodeRemoteError(r),
      (r: XdrReader) => readDomain(r),
      (r: XdrReader) => readTypedParams(r, 16),
    ];
    // Mostly small numbers, so lengths, tags and "present" flags are often valid and decoding gets deep.
    const word = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
    fc.assert(
      fc.property(fc.array(word, { maxLength: 40 }), fc.nat(3), fc.nat(2), (words, cut, which) => {
        const w = new XdrWriter();
        for (const x of words) w.int(x);
        const bytes = w.bytes().subarray(0, Math.max(0, w.length - cut));
        try {
          (decoders[which] as (r: XdrReader) => unknown)(new XdrReader(Buffer.from(bytes)));
        } catch (err) {
          expect(err).toBeInstanceOf(XdrError);
        }
      }),
    );
  });
});

const MAX_PACKET = 32 * 1024 * 1024 + 4;

const header: fc.Arbitrary<PacketHeader> = fc.record({
  program: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  version: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  procedure: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  type: fc.constantFrom(0, 1, 2, 3, 4, 5, 6),
  serial: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  status: fc.constantFrom(0, 1, 2),
}) as fc.Arbitrary<PacketHeader>;

describe('packet framing properties', () => {
  it('decodes any chunking of a packet stream identically', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(header, fc.uint8Array({ maxLength: 40 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(60), { maxLength: 30 }),
        (packets, cuts) => {
          const all = Buffer.concat(packets.map(([h, p]) => encodePacket(h, p)));
          const reader = new PacketReader();
          const got = [];
          let at = 0;
          for (const c of cuts) {
            got.push(...reader.push(all.subarray(at, at + c)));
            at = Math.min(all.length, at + c);
          }
          got.push(...reader.push(all.subarray(at)));
          expect(got.map((p) => p.header)).toEqual(packets.map(([h]) => h));
          expect(got.map((p) => new Uint8Array(p.payload))).toEqual(packets.map(([, p]) => p));
        },
      ),
    );
  });

  it('refuses a length word below the header or above VIR_NET_MESSAGE_MAX + 4 as soon as it is complete', () => {
    const bad = fc.oneof(
      fc.integer({ min: 0, max: 27 }),
      fc.integer({ min: MAX_PACKET + 1, max: 2 ** 32 - 1 }),
    );
    fc.assert(
      fc.property(bad, fc.nat(3), (length, split) => {
        const word = Buffer.alloc(4);
        word.writeUInt32BE(length);
        const reader = new PacketReader();
        // Nothing is waited for: the bytes of a 4 GiB "packet" must not be buffered.
        expect(reader.push(word.subarray(0, split))).toEqual([]);
        expect(() => reader.push(word.subarray(split))).toThrow(XdrError);
      }),
    );
    const ok = new PacketReader();
    const word = Buffer.alloc(4);
    word.writeUInt32BE(MAX_PACKET);
    expect(ok.push(word)).toEqual([]);
  });
});
