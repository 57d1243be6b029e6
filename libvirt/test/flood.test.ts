import fc from 'fast-check';
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcConnection } from '../src/connection.js';
import { ConnectionClosedError } from '../src/errors.js';
import {
  DomainEventRegistry,
  EventsLostError,
  LIFECYCLE_QUEUE_MAX,
  LifecycleEventType,
  type LifecycleSubscription,
} from '../src/events.js';
import { PacketStatus, PacketType, Program, type Packet } from '../src/packet.js';
import { Proc } from '../src/procedures/numbers.js';
import { VolumeApi } from '../src/procedures/storage.js';
import type { DownloadStream } from '../src/stream.js';
import { XdrError } from '../src/xdr.js';
import { FakeDaemon, xdr, type FakePeer } from './fake-daemon.js';

/**
 * A daemon (or a domain through it) that sends more than we can take must not grow our memory
 * for as long as it keeps sending: each test floods one path and looks at what was queued.
 */

let daemon: FakeDaemon;
const conns: RpcConnection[] = [];

beforeAll(async () => {
  daemon = await FakeDaemon.start();
});

afterEach(() => {
  for (const c of conns.splice(0)) c.destroy(new Error('test over'));
  daemon.dropPeers();
});

afterAll(async () => {
  await daemon.stop();
});

async function connect(): Promise<{ rpc: RpcConnection; peer: FakePeer }> {
  const peer = daemon.nextPeer();
  const rpc = await RpcConnection.open(daemon.socket, { keepalive: false });
  conns.push(rpc);
  return { rpc, peer: await peer };
}

/** A message procedure nothing handles, sent after a flood to see it has all been routed. */
const MARKER = 0x7fff;

/**
 * Waits until the client has routed everything the daemon sent so far, then returns what the
 * client has sent since the last call to this (keepalive aside).
 */
async function barrier(rpc: RpcConnection, peer: FakePeer): Promise<Packet[]> {
  const routed = new Promise<void>((resolve) => {
    const onMessage = (procedure: number) => {
      if (procedure !== MARKER) return;
      rpc.off('message', onMessage);
      resolve();
    };
    rpc.on('message', onMessage);
  });
  peer.send({ type: PacketType.MESSAGE, serial: 0, procedure: MARKER });
  await routed;
  // Whatever the client sent while routing precedes this call on the wire.
  const probe = rpc.call(Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.string());
  const before: Packet[] = [];
  for (;;) {
    const p = await peer.next();
    if (p.header.type === PacketType.CALL && p.header.procedure === Proc.CONNECT_GET_HOSTNAME) {
      peer.answer(
        p,
        xdr((w) => w.string('host')),
      );
      break;
    }
    before.push(p);
  }
  expect(await probe).toBe('host');
  return before;
}

const dom = { name: 'flooder', uuid: '6f1f5c8e-0000-4000-8000-000000000001', id: 3 };

describe('lifecycle events for an iterating consumer that does not keep up', () => {
  it(`ends the iteration with EventsLostError past ${LIFECYCLE_QUEUE_MAX} queued events, and deregisters`, async () => {
    const { rpc, peer } = await connect();
    const registry = new DomainEventRegistry();
    await registry.attach(rpc);
    const subscribing = registry.subscribeLifecycle(rpc, null);
    peer.answer(
      await peer.next(),
      xdr((w) => w.int(7)),
    );
    const sub = await subscribing;
    // Iterating, but the consumer never gets round to calling next().
    const events = sub[Symbol.asyncIterator]();

    const flood = 3 * LIFECYCLE_QUEUE_MAX;
    for (let i = 0; i < flood; i++) peer.lifecycle(7, dom, LifecycleEventType.STARTED);
    const sent = await barrier(rpc, peer);

    const queued = (sub as unknown as { queue: unknown[] }).queue.length;
    expect(queued).toBeLessThanOrEqual(LIFECYCLE_QUEUE_MAX);
    await expect(events.next()).rejects.toBeInstanceOf(EventsLostError);
    // The daemon stops sending events nobody will read.
    expect(sent.map((p) => p.header.procedure)).toEqual([Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY]);
  });

  it('still delivers every event to a consumer that keeps up, and queues nothing for listeners', async () => {
    const { rpc, peer } = await connect();
    const registry = new DomainEventRegistry();
    await registry.attach(rpc);
    const subscribing = registry.subscribeLifecycle(rpc, null);
    peer.answer(
      await peer.next(),
      xdr((w) => w.int(7)),
    );
    const sub: LifecycleSubscription = await subscribing;
    let heard = 0;
    sub.on('event', () => heard++);
    const flood = 3 * LIFECYCLE_QUEUE_MAX;
    let read = 0;
    const reader = (async () => {
      for await (const ev of sub) {
        expect(ev.domain.name).toBe(dom.name);
        if (++read === flood) break;
      }
    })();
    for (let i = 0; i < flood; i++) peer.lifecycle(7, dom, LifecycleEventType.STARTED);
    // The consumer's `for await` keeps up between socket reads, and its break closes the
    // subscription; had it fallen behind, the overflow would have closed it and failed the loop.
    const deregister = await peer.next();
    expect(deregister.header.procedure).toBe(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY);
    peer.answer(deregister);
    await reader;
    expect(read).toBe(flood);
    expect(heard).toBe(flood);
  });
});

describe('keepalive', () => {
  it('queues at most one PONG for a daemon that floods PINGs and does not read', async () => {
    const { rpc, peer } = await connect();
    peer.socket.pause();
    const routed = new Promise<void>((resolve) => rpc.on('message', () => resolve()));
    const pings = 20_000;
    for (let i = 0; i < pings; i++) {
      peer.send({ program: Program.KEEPALIVE, type: PacketType.MESSAGE, serial: 0, procedure: 1 });
    }
    // A message after the PINGs shows they have all been handled.
    peer.send({ type: PacketType.MESSAGE, serial: 0, procedure: MARKER });
    await routed;

    const queued = (rpc as unknown as { socket: Socket }).socket.writableLength;
    expect(queued).toBeLessThanOrEqual(28);
    // It still answers: PONGs went out while the daemon's socket had room.
    peer.socket.resume();
    await barrier(rpc, peer);
    expect(peer.pongs).toBeGreaterThanOrEqual(1);
    expect(peer.pongs).toBeLessThan(pings / 100);
  });
});

describe('download streams', () => {
  const vol = { pool: 'p', name: 'v', key: '/k' };

  async function download(): Promise<{
    rpc: RpcConnection;
    peer: FakePeer;
    stream: DownloadStream;
    serial: number;
  }> {
    const { rpc, peer } = await connect();
    const pending = new VolumeApi(() => rpc).download(vol);
    const call = await peer.next();
    peer.answer(call);
    return { rpc, peer, stream: await pending, serial: call.header.serial };
  }

  const streamPacket = (serial: number, status: PacketStatus = PacketStatus.CONTINUE) => ({
    type: PacketType.STREAM,
    serial,
    procedure: Proc.STORAGE_VOL_DOWNLOAD,
    status,
  });

  it('answers a flood of ends of data with one finish', async () => {
    const { rpc, peer, stream, serial } = await download();
    stream.resume();
    for (let i = 0; i < 5000; i++) peer.send(streamPacket(serial));
    const sent = await barrier(rpc, peer);
    const finishes = sent.filter(
      (p) => p.header.type === PacketType.STREAM && p.header.status === PacketStatus.OK,
    );
    expect(finishes).toHaveLength(1);
    const ended = new Promise<void>((resolve) => stream.on('end', resolve));
    peer.send(streamPacket(serial, PacketStatus.OK));
    await ended;
  });

  it('queues a flood of 1-byte packets as bytes, not as a Buffer per packet', async () => {
    const { rpc, peer, stream, serial } = await download();
    const packets = 100_000;
    for (let i = 0; i < packets; i++) peer.send(streamPacket(serial), Buffer.of(i & 0xff));
    // Below the high-water mark, so the socket is still read and the barrier passes.
    await barrier(rpc, peer);

    let buffers = 0;
    const parts: Buffer[] = [];
    let got = 0;
    await new Promise<void>((resolve) => {
      stream.on('data', (c: Buffer) => {
        buffers++;
        parts.push(c);
        got += c.length;
        if (got >= packets) resolve();
      });
    });
    const data = Buffer.concat(parts);
    expect(data.length).toBe(packets);
    expect(data.every((b, i) => b === (i & 0xff))).toBe(true);
    // libvirt's packets carry at most 256 KiB; what a consumer holds costs its bytes, not a
    // Buffer each: on average at least 1 KiB per queued Buffer.
    expect(buffers).toBeLessThanOrEqual(packets / 1024);
    stream.destroy();
  });

  it('delivers every byte in order whatever the packet sizes and the consumer pace', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 60_000, max: 300_000 })), {
          minLength: 1,
          maxLength: 40,
        }),
        fc.integer({ min: 0, max: 3 }),
        async (sizes, pace) => {
          const { rpc, peer, stream, serial } = await download();
          let at = 0;
          const expected: Buffer[] = [];
          for (const size of sizes) {
            const chunk = Buffer.alloc(size);
            for (let i = 0; i < size; i++) chunk[i] = (at + i) % 251;
            at += size;
            expected.push(chunk);
            peer.send(streamPacket(serial), chunk);
          }
          peer.send(streamPacket(serial));
          const parts: Buffer[] = [];
          const done = (async () => {
            for await (const c of stream as AsyncIterable<Buffer>) {
              parts.push(c);
              if (pace > 0) await new Promise((r) => setTimeout(r, pace));
            }
          })();
          const fin = await peer.next();
          expect(fin.header).toMatchObject({ type: PacketType.STREAM, status: PacketStatus.OK });
          peer.send(streamPacket(serial, PacketStatus.OK));
          await done;
          expect(Buffer.concat(parts).equals(Buffer.concat(expected))).toBe(true);
          rpc.destroy(new Error('run over'));
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('reply size', () => {
  // VIR_NET_MESSAGE_MAX (32 MiB) is the packet without its 4-byte length word.
  const LIMIT = 32 * 1024 * 1024 + 4;

  it('fails the connection on a length word past libvirt limit before any of the body arrives', async () => {
    const { rpc, peer } = await connect();
    const closed = new Promise<ConnectionClosedError | undefined>((r) => rpc.once('close', r));
    const call = rpc.call(Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.string());
    await peer.next();
    const word = Buffer.alloc(4);
    word.writeUInt32BE(LIMIT + 1);
    peer.socket.write(word);
    expect((await closed)?.cause).toBeInstanceOf(XdrError);
    await expect(call).rejects.toBeInstanceOf(ConnectionClosedError);
  });

  it('takes a reply of exactly the limit', async () => {
    const { rpc, peer } = await connect();
    const call = rpc.call(Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.fixedOpaque(r.remaining).length);
    const sent = await peer.next();
    peer.answer(sent, Buffer.alloc(LIMIT - 28));
    expect(await call).toBe(LIMIT - 28);
  });
});
