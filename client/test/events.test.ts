import { describe, expect, it } from 'vitest';

import {
  EventStreamDecoder,
  PermissionDenied,
  QubesDaemonAccessError,
  QubesDaemonCommunicationError,
  type AdminEvent,
} from '../src/index.js';
import { event } from './fixtures/wire.js';

/** Part of the stream captured in the reference (§1.5), including an empty value. */
const CAPTURED = [
  '1\0\0connection-established\0\0',
  // (Written with \x00 where a digit follows: "\0" + digit would be an octal escape.)
  '1\0work\0property-set:memory\0name\0memory\0newvalue\x00600\0oldvalue\x00400\0\0',
  '1\0work\0domain-feature-pre-delete:foo\0feature\0foo\0\0',
  '1\0\0domain-add\0vm\0ev1\0\0',
  '1\0ev1\0domain-create-on-disk\0\0',
  event('work', 'property-set:netvm', { name: 'netvm', newvalue: '', oldvalue: 'sys-net' }),
].join('');

const EXPECTED: AdminEvent[] = [
  { subject: '', event: 'connection-established', kwargs: {} },
  {
    subject: 'work',
    event: 'property-set:memory',
    kwargs: { name: 'memory', newvalue: '600', oldvalue: '400' },
  },
  { subject: 'work', event: 'domain-feature-pre-delete:foo', kwargs: { feature: 'foo' } },
  { subject: '', event: 'domain-add', kwargs: { vm: 'ev1' } },
  { subject: 'ev1', event: 'domain-create-on-disk', kwargs: {} },
  {
    subject: 'work',
    event: 'property-set:netvm',
    kwargs: { name: 'netvm', newvalue: '', oldvalue: 'sys-net' },
  },
];

function decodeInChunks(stream: Buffer, cuts: number[]): AdminEvent[] {
  const decoder = new EventStreamDecoder();
  const events: AdminEvent[] = [];
  let start = 0;
  for (const cut of [...cuts, stream.length]) {
    events.push(...decoder.push(stream.subarray(start, cut)));
    start = cut;
  }
  decoder.end();
  return events;
}

describe('EventStreamDecoder', () => {
  const stream = Buffer.from(CAPTURED, 'latin1');

  it('decodes a whole stream in one chunk', () => {
    expect(decodeInChunks(stream, [])).toEqual(EXPECTED);
  });

  it('decodes the same events whatever single boundary splits the stream', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      expect(decodeInChunks(stream, [cut])).toEqual(EXPECTED);
    }
  });

  it('decodes the stream delivered one byte at a time', () => {
    expect(
      decodeInChunks(
        stream,
        Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
      ),
    ).toEqual(EXPECTED);
  });

  it('yields an event as soon as its terminator arrives', () => {
    const decoder = new EventStreamDecoder();
    const first = Buffer.from('1\0\0connection-established\0\0', 'latin1');
    expect(decoder.push(first.subarray(0, first.length - 1))).toEqual([]);
    expect(decoder.push(first.subarray(first.length - 1))).toEqual([EXPECTED[0]]);
  });

  it('throws the error of an exception reply once the stream ends', () => {
    const decoder = new EventStreamDecoder();
    expect(decoder.push(Buffer.from('2\0PermissionDenied\0\0', 'latin1'))).toEqual([]);
    expect(decoder.push(Buffer.from('denied\0', 'latin1'))).toEqual([]);
    expect(() => decoder.end()).toThrow(PermissionDenied);
  });

  it('treats a stream closed without a byte as an empty reply', () => {
    expect(() => new EventStreamDecoder().end()).toThrow(QubesDaemonAccessError);
  });

  it('reports a stream cut mid-message', () => {
    const decoder = new EventStreamDecoder();
    decoder.push(Buffer.from('1\0\0connection-established\0\0', 'latin1'));
    decoder.push(Buffer.from('1\0work\0domain-', 'latin1'));
    expect(() => decoder.end()).toThrow(QubesDaemonCommunicationError);
  });
});
