import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcConnection } from '../src/connection.js';
import { ConnectionClosedError, LibvirtError } from '../src/errors.js';
import { DomainEventRegistry, type DomainLifecycleEvent } from '../src/events.js';
import {
  PacketReader,
  PacketStatus,
  PacketType,
  Program,
  encodePacket,
  type Packet,
  type PacketHeader,
} from '../src/packet.js';
import { writeDomain, type Domain } from '../src/procedures/handles.js';
import { Proc } from '../src/procedures/numbers.js';
import { VolumeApi } from '../src/procedures/storage.js';
import type { DownloadStream } from '../src/stream.js';
import { XdrError, XdrWriter } from '../src/xdr.js';

/** The daemon's end of one connection: the packets we sent, and a way to answer anything. */
class Peer {
  private readonly reader = new PacketReader();
  private readonly got: Packet[] = [];
  private waiter: (() => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.got.push(...this.reader.push(c));
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  /** The next packet we sent, keepalive answers aside. */
  async next(): Promise<Packet> {
    for (;;) {
      while (this.got.length === 0) await new Promise<void>((r) => (this.waiter = r));
      const p = this.got.shift() as Packet;
      if (p.header.program !== Program.KEEPALIVE) return p;
    }
  }

  send(header: Partial<PacketHeader> & { serial: number }, payload?: Uint8Array): void {
    this.socket.write(encodePacket({ ...reply(0), ...header }, payload));
  }

  /** Answers a call as libvirtd would. */
  answer(call: Packet, payload?: Uint8Array): void {
    this.send({ ...reply(call.header.serial), procedure: call.header.procedure }, payload);
  }
}

const reply = (serial: number): PacketHeader => ({
  program: Program.REMOTE,
  version: 1,
  procedure: Proc.CONNECT_GET_TYPE,
  type: PacketType.REPLY,
  serial,
  status: PacketStatus.OK,
});

const xdr = (f: (w: XdrWriter) => void): Buffer => {
  const w = new XdrWriter();
  f(w);
  return Buffer.from(w.bytes());
};

let dir: string;
let server: Server;
const peers: Peer[] = [];
let accepted: ((p: Peer) => void) | undefined;
const conns: RpcConnection[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'odyssey-libvirt-wire-'));
  server = createServer((s) => {
    const p = new Peer(s);
    peers.push(p);
    accepted?.(p);
  });
  await new Promise<void>((r) => server.listen(join(dir, 'sock'), r));
});

afterEach(() => {
  for (const c of conns.splice(0)) c.destroy(new Error('test over'));
  for (const p of peers.splice(0)) p.socket.destroy();
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function connect(): Promise<{ rpc: RpcConnection; peer: Peer }> {
  const peer = new Promise<Peer>((r) => (accepted = r));
  const rpc = await RpcConnection.open(join(dir, 'sock'), { keepalive: false });
  conns.push(rpc);
  return { rpc, peer: await peer };
}

/** Settles with the outcome, or with 'pending' if nothing happened within `ms`. */
function outcome<T>(p: Promise<T>, ms = 300): Promise<{ ok: T } | { err: unknown } | 'pending'> {
  return Promise.race([
    p.then(
      (ok) => ({ ok }),
      (err: unknown) => ({ err }),
    ),
    new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms)),
  ]);
}

const closeReason = (rpc: RpcConnection) =>
  new Promise<ConnectionClosedError | undefined>((r) => rpc.once('close', r));

describe('framing over a socket', () => {
  it('fails the connection on a bad length word and rejects every pending call', async () => {
    const { rpc, peer } = await connect();
    const closed = closeReason(rpc);
    const calls = [1, 2, 3].map(() => rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string()));
    await peer.next();
    peer.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    const err = await closed;
    expect(err).toBeInstanceOf(ConnectionClosedError);
    expect(err?.cause).toBeInstanceOf(XdrError);
    for (const c of calls) await expect(c).rejects.toBe(err);
    expect(rpc.isClosed).toBe(true);
  });
});

describe('replies libvirt would not match to our call', () => {
  it('fails the connection on a reply no call is waiting for, as virNetClientCallDispatchReply does', async () => {
    const { rpc, peer } = await connect();
    const closed = closeReason(rpc);
    const call = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    const sent = await peer.next();
    peer.send(
      { serial: sent.header.serial + 1 },
      xdr((w) => w.string('QEMU')),
    );
    expect(await outcome(call)).toEqual({ err: expect.any(ConnectionClosedError) as unknown });
    expect((await closed)?.message).toMatch(/no call waiting/);
  });

  it('matches program and version as well as the serial', async () => {
    for (const wrong of [{ program: Program.QEMU }, { version: 2 }]) {
      const { rpc, peer } = await connect();
      const call = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
      const sent = await peer.next();
      peer.send(
        { ...wrong, serial: sent.header.serial },
        xdr((w) => w.string('QEMU')),
      );
      expect(await outcome(call)).toEqual({ err: expect.any(ConnectionClosedError) as unknown });
    }
  });

  it('fails the connection on a CALL from the daemon', async () => {
    const { rpc, peer } = await connect();
    const call = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    const sent = await peer.next();
    peer.send(
      { type: PacketType.CALL, serial: sent.header.serial },
      xdr((w) => w.string('QEMU')),
    );
    expect(await outcome(call)).toEqual({ err: expect.any(ConnectionClosedError) as unknown });
  });

  it('rejects only that call on a wrong procedure or a CONTINUE status, as virNetClientProgramCall does', async () => {
    const { rpc, peer } = await connect();
    const a = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    const b = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    const c = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    const [pa, pb, pc] = [await peer.next(), await peer.next(), await peer.next()];
    const qemu = xdr((w) => w.string('QEMU'));
    peer.send({ serial: pa.header.serial, procedure: Proc.CONNECT_GET_HOSTNAME }, qemu);
    peer.send({ serial: pb.header.serial, status: PacketStatus.CONTINUE }, qemu);
    peer.answer(pc, qemu);
    expect(await outcome(a)).toEqual({ err: expect.any(XdrError) as unknown });
    expect(await outcome(b)).toEqual({ err: expect.any(XdrError) as unknown });
    expect(await c).toBe('QEMU');
    expect(rpc.isClosed).toBe(false);
  });

  it('never lets a STREAM packet stand in for a reply', async () => {
    const { rpc, peer } = await connect();
    const call = rpc.call(Proc.DOMAIN_DESTROY);
    const sent = await peer.next();
    // An empty STREAM/OK would otherwise "succeed" the destroy without the daemon replying.
    peer.send({ type: PacketType.STREAM, serial: sent.header.serial, procedure: Proc.DOMAIN_DESTROY });
    expect(await outcome(call, 100)).toBe('pending');
    peer.send(
      { serial: sent.header.serial, procedure: Proc.DOMAIN_DESTROY, status: PacketStatus.ERROR },
      xdr((w) => {
        w.int(42)
          .int(10)
          .optional('gone', (x, v) => x.string(v))
          .int(2)
          .bool(false);
        w.bool(false).bool(false).bool(false).int(0).int(0).bool(false);
      }),
    );
    const got = await outcome(call);
    expect(got).toEqual({ err: expect.any(LibvirtError) as unknown });
  });

  it('settles a waiting call exactly when libvirt would, whatever header the daemon sends first', async () => {
    let cur = await connect();
    const hostile = fc.record({
      program: fc.constantFrom(Program.REMOTE, Program.QEMU, Program.KEEPALIVE, 0x12345678),
      version: fc.constantFrom(1, 0, 2),
      procedure: fc.constantFrom(Proc.CONNECT_GET_TYPE, Proc.CONNECT_GET_HOSTNAME, -1),
      type: fc.integer({ min: 0, max: 7 }),
      serialDelta: fc.constantFrom(0, 0, 1, -1),
      status: fc.integer({ min: 0, max: 3 }),
      payload: fc.constantFrom(
        Buffer.alloc(0),
        xdr((w) => w.string('HOSTILE')),
        Buffer.from([1, 2, 3]),
      ),
    });
    await fc.assert(
      fc.asyncProperty(hostile, async (h) => {
        if (cur.rpc.isClosed) cur = await connect();
        const { rpc, peer } = cur;
        const call = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
        const sent = await peer.next();
        const serial = (sent.header.serial + h.serialDelta) >>> 0;
        // Types and statuses outside the enums too: what a daemon may send is any u32.
        peer.send({ ...h, type: h.type as PacketType, status: h.status as PacketStatus, serial }, h.payload);
        peer.answer(
          sent,
          xdr((w) => w.string('QEMU')),
        );
        const got = await outcome(call);
        const isReply = h.type === PacketType.REPLY;
        const matches =
          isReply && h.program === Program.REMOTE && h.version === 1 && serial === sent.header.serial;
        if (
          h.program === Program.KEEPALIVE ||
          h.type === PacketType.MESSAGE ||
          h.type === PacketType.STREAM ||
          h.type === PacketType.STREAM_HOLE
        ) {
          // Keepalives, events and packets of streams we do not have are not about this call.
          expect(got).toEqual({ ok: 'QEMU' });
        } else if (!matches) {
          expect(got).toEqual({ err: expect.any(ConnectionClosedError) as unknown });
        } else if (
          h.status === PacketStatus.OK &&
          h.procedure === Proc.CONNECT_GET_TYPE &&
          h.payload.length === 12
        ) {
          expect(got).toEqual({ ok: 'HOSTILE' });
        } else {
          expect(got).toEqual({
            err: expect.any(h.status === PacketStatus.ERROR ? Error : XdrError) as unknown,
          });
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('stream packets', () => {
  const vol = { pool: 'p', name: 'v', key: '/k' };
  const data = (serial: number, bytes: Uint8Array, status: PacketStatus = PacketStatus.CONTINUE) => ({
    header: { type: PacketType.STREAM, serial, procedure: Proc.STORAGE_VOL_DOWNLOAD, status },
    bytes,
  });

  async function download(): Promise<{
    rpc: RpcConnection;
    peer: Peer;
    stream: DownloadStream;
    serial: number;
  }> {
    const { rpc, peer } = await connect();
    const pending = new VolumeApi(() => rpc).download(vol);
    const sent = await peer.next();
    peer.answer(sent);
    return { rpc, peer, stream: await pending, serial: sent.header.serial };
  }

  const collect = (s: DownloadStream) =>
    new Promise<{ data: Buffer; err?: unknown }>((resolve) => {
      const parts: Buffer[] = [];
      s.on('data', (c: Buffer) => parts.push(c));
      s.on('end', () => resolve({ data: Buffer.concat(parts) }));
      s.on('error', (err) => resolve({ data: Buffer.concat(parts), err }));
      setTimeout(() => resolve({ data: Buffer.concat(parts), err: 'still open' }), 2000);
    });

  it('delivers data that arrives before the reply to the stream, not to the call', async () => {
    const { rpc, peer } = await connect();
    const pending = new VolumeApi(() => rpc).download(vol);
    const sent = await peer.next();
    const d = data(sent.header.serial, Buffer.from('early'));
    peer.send(d.header, d.bytes);
    peer.answer(sent);
    const stream = await pending;
    const got = collect(stream);
    peer.send(data(sent.header.serial, Buffer.alloc(0)).header);
    const fin = await peer.next();
    expect(fin.header).toMatchObject({ type: PacketType.STREAM, status: PacketStatus.OK });
    peer.send(data(sent.header.serial, Buffer.alloc(0), PacketStatus.OK).header);
    expect(await got).toEqual({ data: Buffer.from('early') });
  });

  it('fails a download on a hole it never asked for instead of dropping it', async () => {
    const { peer, stream, serial } = await download();
    const got = collect(stream);
    peer.send(data(serial, Buffer.from('abcd')).header, Buffer.from('abcd'));
    const hole = { ...data(serial, Buffer.alloc(0)).header, type: PacketType.STREAM_HOLE };
    peer.send(
      hole,
      xdr((w) => w.hyper(4096).uint(0)),
    );
    peer.send(data(serial, Buffer.from('efgh')).header, Buffer.from('efgh'));
    peer.send(data(serial, Buffer.alloc(0)).header);
    expect(await got).toEqual({ data: Buffer.from('abcd'), err: expect.any(XdrError) as unknown });
  });

  it('fails a download the daemon confirms before we finished it', async () => {
    const { peer, stream, serial } = await download();
    const got = collect(stream);
    peer.send(data(serial, Buffer.from('abcd')).header, Buffer.from('abcd'));
    peer.send(data(serial, Buffer.alloc(0), PacketStatus.OK).header);
    const r = await got;
    expect(r.data.toString()).toBe('abcd');
    expect(r.err).toBeInstanceOf(XdrError);
  });

  it('fails the connection on a stream status libvirt does not define', async () => {
    const { rpc, peer, stream, serial } = await download();
    const got = collect(stream);
    peer.send(data(serial, Buffer.from('abcd'), 7 as PacketStatus).header, Buffer.from('abcd'));
    const r = await got;
    expect(r.data.length).toBe(0);
    expect(r.err).toBeInstanceOf(ConnectionClosedError);
    expect(rpc.isClosed).toBe(true);
  });

  it('fails an upload the daemon confirms before we finished it', async () => {
    const { rpc, peer } = await connect();
    const pending = new VolumeApi(() => rpc).upload(vol);
    const sent = await peer.next();
    peer.answer(sent);
    const stream = await pending;
    const failed = new Promise<unknown>((r) => stream.on('error', r));
    peer.send({
      ...data(sent.header.serial, Buffer.alloc(0), PacketStatus.OK).header,
      procedure: Proc.STORAGE_VOL_UPLOAD,
    });
    expect(await outcome(failed, 2000)).toEqual({ ok: expect.any(XdrError) as unknown });
  });

  it('reports a STREAM/ERROR whose remote_error is garbage as XdrError', async () => {
    const { peer, stream, serial } = await download();
    const got = collect(stream);
    peer.send(data(serial, Buffer.alloc(0), PacketStatus.ERROR).header, Buffer.from([0, 0, 0]));
    expect((await got).err).toBeInstanceOf(XdrError);
  });

  it('keeps reading the socket after a stream call whose reply could not be decoded', async () => {
    const { rpc, peer } = await connect();
    const failed = new VolumeApi(() => rpc).download(vol).catch((e: unknown) => e);
    const sent = await peer.next();
    // A reply with a body the call does not expect, then more stream data than the stream buffers.
    peer.answer(sent, Buffer.alloc(4));
    for (let i = 0; i < 24; i++)
      peer.send(data(sent.header.serial, Buffer.alloc(256 * 1024)).header, Buffer.alloc(256 * 1024));
    expect(await failed).toBeInstanceOf(XdrError);
    const next = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
    peer.answer(
      await peer.next(),
      xdr((w) => w.string('QEMU')),
    );
    expect(await outcome(next, 2000)).toEqual({ ok: 'QEMU' });
  });
});

describe('event messages', () => {
  it('delivers exactly the well-formed lifecycle events of registered callbacks', async () => {
    const { rpc, peer } = await connect();
    const registry = new DomainEventRegistry();
    await registry.attach(rpc);
    const sub = registry.subscribeLifecycle(rpc, null);
    peer.answer(
      await peer.next(),
      xdr((w) => w.int(7)),
    );
    const events: DomainLifecycleEvent[] = [];
    (await sub).on('event', (e) => events.push(e));

    const domain: fc.Arbitrary<Domain> = fc.record({
      name: fc.string({ unit: 'grapheme', maxLength: 10 }),
      uuid: fc.uuid(),
      id: fc.integer({ min: -1, max: 100 }),
    });
    const event = fc.record({
      callbackId: fc.constantFrom(7, 8),
      domain,
      event: fc.nat(9),
      detail: fc.nat(9),
    });
    const message = fc.oneof(
      event.map((e) => ({
        expect: e.callbackId === 7 ? e : undefined,
        bytes: xdr((w) => {
          w.int(e.callbackId);
          writeDomain(w, e.domain);
          w.int(e.event).int(e.detail);
        }),
      })),
      fc.tuple(event, fc.nat(40)).map(([e, cut]) => {
        const bytes = xdr((w) => {
          w.int(e.callbackId);
          writeDomain(w, e.domain);
          w.int(e.event).int(e.detail);
        });
        return { expect: undefined, bytes: bytes.subarray(0, Math.max(0, bytes.length - 1 - cut)) };
      }),
      // Garbage after a registered callback id, and any bytes for a callback we do not have.
      fc
        .tuple(fc.integer({ min: 64, max: 2 ** 32 - 1 }), fc.uint8Array({ maxLength: 48 }))
        .map(([len, b]) => ({
          expect: undefined,
          bytes: Buffer.concat([xdr((w) => w.int(7).uint(len)), b]),
        })),
      fc
        .uint8Array({ maxLength: 48 })
        .map((b) => ({ expect: undefined, bytes: Buffer.concat([xdr((w) => w.int(8)), b]) })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(message, { maxLength: 8 }), async (msgs) => {
        events.length = 0;
        for (const m of msgs) {
          peer.send(
            { type: PacketType.MESSAGE, serial: 0, procedure: Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE },
            m.bytes,
          );
        }
        // A reply after the messages shows they have all been routed.
        const probe = rpc.call(Proc.CONNECT_GET_TYPE, undefined, (r) => r.string());
        peer.answer(
          await peer.next(),
          xdr((w) => w.string('QEMU')),
        );
        expect(await probe).toBe('QEMU');
        const want = msgs.flatMap((m) =>
          m.expect ? [{ domain: m.expect.domain, event: m.expect.event, detail: m.expect.detail }] : [],
        );
        expect(events).toEqual(want);
      }),
      { numRuns: 40 },
    );
    expect(rpc.isClosed).toBe(false);
  });
});
