import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  encodeMessage,
  HEADER_SIZE,
  QDB_MAX_DATA,
  QdbDecoder,
  QdbMsg,
  QubesDbProtocolError,
} from '../src/index.js';

function header(type: number, path: Buffer, dataLen: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt8(type, 0);
  path.copy(h, 1, 0, Math.min(path.length, 64));
  h.writeUInt32LE(dataLen, 68);
  return h;
}

describe('message layout', () => {
  it('is struct qdb_hdr on x86: type, 64-byte path, 3 bytes padding, little-endian data_len, then data', () => {
    const frame = encodeMessage(QdbMsg.CmdWrite, '/name', 'work');
    const expected = Buffer.alloc(76);
    expected[0] = 1;
    expected.write('/name', 1, 'latin1');
    expected.writeUInt32LE(4, 68);
    expected.write('work', 72);
    expect(frame).toEqual(expected);
    expect(encodeMessage(QdbMsg.RespWatch, '').length).toBe(72);
  });

  it('reads back what it writes, ignoring bytes after the path terminator', () => {
    const h = header(QdbMsg.RespMultiread, Buffer.from('/qubes-ip\0old-bytes-left-here'), 9);
    expect(decodeHeader(h)).toEqual({ type: QdbMsg.RespMultiread, path: '/qubes-ip', dataLen: 9 });
  });

  it('refuses to encode what a peer would reject', () => {
    expect(() => encodeMessage(QdbMsg.CmdWrite, '/a b')).toThrow(RangeError);
    expect(() => encodeMessage(QdbMsg.CmdWrite, `/${'x'.repeat(63)}`)).toThrow(RangeError);
    expect(() => encodeMessage(QdbMsg.CmdWrite, '/a', Buffer.alloc(QDB_MAX_DATA, 0x41))).toThrow(RangeError);
    expect(() => encodeMessage(QdbMsg.CmdWrite, '/a', Buffer.from('a\0b'))).toThrow(RangeError);
    expect(
      encodeMessage(QdbMsg.CmdWrite, `/${'x'.repeat(62)}`, Buffer.alloc(QDB_MAX_DATA - 1, 0x41)).length,
    ).toBe(HEADER_SIZE + QDB_MAX_DATA - 1);
  });
});

describe('header validation', () => {
  const bad: [string, Buffer][] = [
    ['an unknown type', header(14, Buffer.from('/a\0'), 0)],
    ['type 0xff', header(0xff, Buffer.from('/a\0'), 0)],
    ['a path without terminator', header(QdbMsg.CmdRead, Buffer.alloc(64, 0x61), 0)],
    ['a space in the path', header(QdbMsg.CmdRead, Buffer.from('/a b\0'), 0)],
    ['a leading dash', header(QdbMsg.CmdRead, Buffer.from('-a\0'), 0)],
    ['a non-ASCII byte', header(QdbMsg.CmdRead, Buffer.from([0x2f, 0xc3, 0xa9, 0]), 0)],
    ['data_len QDB_MAX_DATA', header(QdbMsg.CmdWrite, Buffer.from('/a\0'), QDB_MAX_DATA)],
    ['data_len 4 GiB - 1', header(QdbMsg.CmdWrite, Buffer.from('/a\0'), 0xffffffff)],
  ];
  for (const [what, h] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => decodeHeader(h)).toThrow(QubesDbProtocolError);
      const decoder = new QdbDecoder();
      expect(() => decoder.push(Buffer.concat([h, Buffer.alloc(100)]))).toThrow(QubesDbProtocolError);
      // Nothing is kept after a bad header, and nothing more is accepted.
      expect(decoder.buffered).toBe(0);
      expect(() => decoder.push(encodeMessage(QdbMsg.CmdRead, '/a'))).toThrow(QubesDbProtocolError);
    });
  }

  it('accepts the longest path and a dash inside it', () => {
    const path = `/a-${'b'.repeat(60)}`;
    expect(path.length).toBe(63);
    expect(decodeHeader(header(QdbMsg.CmdRead, Buffer.from(`${path}\0`), 0)).path).toBe(path);
  });

  it('refuses a NUL byte inside a value, but not inside other data', () => {
    const write = Buffer.concat([header(QdbMsg.CmdWrite, Buffer.from('/a\0'), 3), Buffer.from('a\0b')]);
    expect(() => new QdbDecoder().push(write)).toThrow(/NUL/);
    const rm = Buffer.concat([header(QdbMsg.CmdRm, Buffer.from('/a\0'), 2), Buffer.from('\0\0')]);
    expect(new QdbDecoder().push(rm)).toEqual([
      { type: QdbMsg.CmdRm, path: '/a', data: Buffer.from('\0\0') },
    ]);
  });
});

describe('decoder', () => {
  it('reassembles messages split at every byte', () => {
    const stream = Buffer.concat([
      encodeMessage(QdbMsg.CmdWrite, '/name', 'work'),
      encodeMessage(QdbMsg.RespOk, '/name'),
      encodeMessage(QdbMsg.RespMultiread, ''),
    ]);
    const decoder = new QdbDecoder();
    const out = [];
    for (const byte of stream) out.push(...decoder.push(Buffer.from([byte])));
    expect(out).toEqual([
      { type: QdbMsg.CmdWrite, path: '/name', data: Buffer.from('work') },
      { type: QdbMsg.RespOk, path: '/name', data: Buffer.alloc(0) },
      { type: QdbMsg.RespMultiread, path: '', data: Buffer.alloc(0) },
    ]);
    expect(decoder.buffered).toBe(0);
  });

  const pathArb = fc
    .stringMatching(/^[A-Za-z0-9_/.:@-]{0,63}$/)
    .filter((p) => !p.startsWith('-') && p.length < 64);
  const valueArb = fc
    .uint8Array({ minLength: 0, maxLength: QDB_MAX_DATA - 1 })
    .map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))));
  const messageArb = fc.record({
    type: fc.integer({ min: 0, max: 13 }),
    path: pathArb,
    data: valueArb,
  });

  /** Splits `bytes` at the given fractions. */
  function chunks(bytes: Buffer, cuts: number[]): Buffer[] {
    const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let start = 0;
    for (const p of [...points, bytes.length]) {
      out.push(bytes.subarray(start, p));
      start = p;
    }
    return out;
  }

  it('round-trips any valid messages however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(messageArb, { maxLength: 8 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }),
        (messages, cuts) => {
          const bytes = Buffer.concat(messages.map((m) => encodeMessage(m.type, m.path, m.data)));
          const decoder = new QdbDecoder();
          const out = chunks(bytes, cuts).flatMap((c) => decoder.push(c));
          expect(out).toEqual(messages.map((m) => ({ type: m.type, path: m.path, data: m.data })));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('on hostile bytes only ever throws a protocol error and never holds more than one message', () => {
    const hostile = fc.oneof(
      fc.uint8Array({ maxLength: 4000 }).map((a) => Buffer.from(a)),
      // Valid-looking headers with random fields, followed by random bytes.
      fc
        .record({
          type: fc.integer({ min: 0, max: 255 }),
          path: fc.uint8Array({ minLength: 64, maxLength: 64 }),
          len: fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.constant(0xffffffff)),
          tail: fc.uint8Array({ maxLength: 4000 }),
        })
        .map(({ type, path, len, tail }) => Buffer.concat([header(type, Buffer.from(path), len), tail])),
    );
    fc.assert(
      fc.property(
        fc.array(hostile, { maxLength: 4 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true })),
        (parts, cuts) => {
          const decoder = new QdbDecoder();
          try {
            for (const chunk of chunks(Buffer.concat(parts), cuts)) {
              for (const message of decoder.push(chunk)) {
                expect(message.data.length).toBeLessThan(QDB_MAX_DATA);
                expect(message.path.length).toBeLessThan(64);
              }
              expect(decoder.buffered).toBeLessThan(QDB_MAX_DATA);
            }
          } catch (error) {
            expect(error).toBeInstanceOf(QubesDbProtocolError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
