import { describe, expect, it } from 'vitest';
import { PacketReader, encodePacket } from '../src/packet.js';
import {
  PacketStatus,
  PacketType,
  Program,
  UnsupportedUriError,
  XdrError,
  XdrReader,
  XdrWriter,
  resolveSocket,
} from '../src/index.js';

describe('XDR', () => {
  it('round-trips every primitive with 4-byte alignment', () => {
    const w = new XdrWriter(4)
      .int(-5)
      .uint(0xfffffffe)
      .hyper(-(2n ** 62n))
      .uhyper(2n ** 64n - 1n)
      .bool(true)
      .double(1.5)
      .string('héllo')
      .opaque(Buffer.from([1, 2, 3]))
      .fixedOpaque(Buffer.from([9, 8, 7, 6, 5]), 5)
      .optional(null, (x, v: number) => x.int(v))
      .optional(7, (x, v) => x.int(v))
      .array(['a', 'bc'], (x, v) => x.string(v));
    const buf = w.bytes();
    expect(buf.length % 4).toBe(0);
    const r = new XdrReader(Buffer.from(buf));
    expect(r.int()).toBe(-5);
    expect(r.uint()).toBe(0xfffffffe);
    expect(r.hyper()).toBe(-(2n ** 62n));
    expect(r.uhyper()).toBe(2n ** 64n - 1n);
    expect(r.bool()).toBe(true);
    expect(r.double()).toBe(1.5);
    expect(r.string()).toBe('héllo');
    expect([...r.opaque()]).toEqual([1, 2, 3]);
    expect([...r.fixedOpaque(5)]).toEqual([9, 8, 7, 6, 5]);
    expect(r.optional((x) => x.int())).toBeNull();
    expect(r.optional((x) => x.int())).toBe(7);
    expect(r.array((x) => x.string())).toEqual(['a', 'bc']);
    r.end();
  });

  it('pads strings with zeros and matches the RFC layout', () => {
    expect(new XdrWriter().string('abcde').bytes().toString('hex')).toBe('000000056162636465000000');
  });

  it('rejects truncated input, oversized lengths and bad bools', () => {
    expect(() => new XdrReader(Buffer.from([0, 0])).int()).toThrow(XdrError);
    expect(() => new XdrReader(new XdrWriter().string('abcdef').bytes()).string(3)).toThrow(/exceeds/);
    expect(() => new XdrReader(new XdrWriter().int(2).bytes()).bool()).toThrow(/bool/);
    expect(() => new XdrReader(new XdrWriter().uint(1_000_000).bytes()).array((x) => x.int())).toThrow(
      XdrError,
    );
    expect(() => new XdrReader(new XdrWriter().int(1).int(2).bytes()).end()).toThrow(/trailing/);
  });
});

describe('packet framing', () => {
  const header = {
    program: Program.REMOTE,
    version: 1,
    procedure: 16,
    type: PacketType.REPLY,
    serial: 42,
    status: PacketStatus.OK,
  };

  it('reassembles packets split and merged across reads', () => {
    const a = encodePacket(header, Buffer.from('payload1'));
    const b = encodePacket({ ...header, serial: 43, type: PacketType.STREAM, status: PacketStatus.CONTINUE });
    const all = Buffer.concat([a, b]);
    const reader = new PacketReader();
    const got = [];
    for (let i = 0; i < all.length; i += 3) got.push(...reader.push(all.subarray(i, i + 3)));
    expect(got).toHaveLength(2);
    expect(got[0]?.header).toEqual(header);
    expect(got[0]?.payload.toString()).toBe('payload1');
    expect(got[1]?.header.serial).toBe(43);
    expect(got[1]?.payload.length).toBe(0);
  });

  it('rejects impossible lengths', () => {
    const bad = Buffer.alloc(8);
    bad.writeUInt32BE(7, 0);
    expect(() => new PacketReader().push(bad)).toThrow(/invalid packet length/);
  });
});

describe('URI to socket table', () => {
  it('maps drivers to the legacy daemon or to modular daemons', () => {
    expect(resolveSocket('qemu:///system', { mode: 'legacy' }).path).toBe('/run/libvirt/libvirt-sock');
    expect(resolveSocket('qemu:///system', { mode: 'legacy', readOnly: true }).path).toBe(
      '/run/libvirt/libvirt-sock-ro',
    );
    expect(resolveSocket('qemu:///system', { mode: 'direct' }).path).toBe('/run/libvirt/virtqemud-sock');
    expect(resolveSocket('xen:///system', { mode: 'direct' }).path).toBe('/run/libvirt/virtxend-sock');
    expect(resolveSocket('vbox:///session', { mode: 'direct', runDir: '/r' }).path).toBe('/r/virtvboxd-sock');
    expect(resolveSocket('lxc:///system', { mode: 'direct', readOnly: true }).path).toBe(
      '/run/libvirt/virtlxcd-sock-ro',
    );
    expect(resolveSocket('storage:///system', { mode: 'direct' }).path).toBe(
      '/run/libvirt/virtstoraged-sock',
    );
    // The test driver lives in libvirtd, or behind virtproxyd's legacy socket.
    expect(resolveSocket('test:///default', { mode: 'direct' }).path).toBe('/run/libvirt/libvirt-sock');
  });

  it('honours an explicit socket and strips client-side parts from the opened URI', () => {
    const r = resolveSocket('test+unix:///default?socket=/tmp/x/libvirt-sock&mode=legacy');
    expect(r.path).toBe('/tmp/x/libvirt-sock');
    expect(r.uri).toBe('test:///default');
  });

  it('refuses remote transports', () => {
    expect(() => resolveSocket('qemu+ssh://host/system')).toThrow(UnsupportedUriError);
    expect(() => resolveSocket('qemu+tcp:///system')).toThrow(UnsupportedUriError);
  });
});
