import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket, createServer, type Server } from 'node:net';
import type { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  ADMIN_DOMAIN,
  ChannelMux,
  FrameDecoder,
  FrameError,
  FrameType,
  GuestPort,
  KvmGuestTransport,
  KvmHostTransport,
  MuxVchan,
  OpenRefused,
  encodeFrame,
  type ChannelSide,
  type Frame,
  type PortHandle,
} from '../src/kvm/index.js';
import { HEADER_SIZE, MAX_DATA } from '../src/kvm/frames.js';

// What a hostile peer can write into a KVM guest's vchan channel (a guest into its virtio-serial
// port, or the admin domain into the guest), and what the receiving ChannelMux makes of it.

const RING = 4096;
const RINGS = { readRing: RING, writeRing: RING };
const GUEST_ID = 0x80000000;

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const openPayload = (port: number, window: number, domain = '0'): Buffer =>
  Buffer.concat([u32(port), u32(window), Buffer.from(domain)]);
const hello = (nonce: number, reply = 0): Buffer =>
  Buffer.concat([Buffer.alloc(8, nonce), Buffer.from([reply])]);

const u32Arb = fc.oneof(
  fc.constantFrom(0, 1, RING - 1, RING, RING + 1, 0x7fffffff, 0x80000000, 0xffffffff),
  fc.integer({ min: 0, max: 0xffffffff }),
);
// Mostly a few ids of the host's space (1, 2, ...) and of the guest's, so that frames meet open streams.
const idArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(1, 2, GUEST_ID + 1, GUEST_ID + 2) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
const bytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
/** DATA payloads up to `maxLength` bytes, of one value: quick to shrink, content does not matter here. */
const dataArb = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.nat(maxLength), fc.nat(255)).map(([n, byte]) => Buffer.alloc(n, byte));

interface WireFrame {
  readonly type: FrameType;
  readonly id: number;
  readonly payload: Buffer;
}
const frame = (
  type: FrameType,
  id: fc.Arbitrary<number>,
  payload: fc.Arbitrary<Buffer>,
): fc.Arbitrary<WireFrame> => fc.record({ type: fc.constant(type), id, payload });

/** Frames a peer may send as far as framing goes (each payload the size its type has), whatever they mean. */
const framedArb: fc.Arbitrary<WireFrame> = fc.oneof(
  { weight: 4, arbitrary: frame(FrameType.DATA, idArb, dataArb(3000)) },
  frame(
    FrameType.HELLO,
    fc.constant(0),
    fc.tuple(fc.constantFrom(1, 2), fc.constantFrom(0, 1)).map(([n, r]) => hello(n, r)),
  ),
  frame(
    FrameType.OPEN,
    idArb,
    fc
      .tuple(
        fc.oneof({ weight: 3, arbitrary: fc.constantFrom(512, 513) }, u32Arb),
        u32Arb,
        fc.oneof({ weight: 3, arbitrary: fc.constant('0') }, fc.constant('b'), fc.string()),
      )
      .map(([port, window, domain]) => openPayload(port, window, domain)),
  ),
  frame(FrameType.ACCEPT, idArb, u32Arb.map(u32)),
  frame(FrameType.REFUSE, idArb, fc.constant(Buffer.alloc(0))),
  frame(FrameType.CREDIT, idArb, u32Arb.map(u32)),
  frame(FrameType.CLOSE, idArb, fc.constant(Buffer.alloc(0))),
);
/** Any type with up to 12 bytes of payload: mostly sizes that do not fit the type. */
const misframedArb: fc.Arbitrary<WireFrame> = fc.record({
  type: fc.integer({ min: FrameType.HELLO, max: FrameType.CLOSE }) as fc.Arbitrary<FrameType>,
  id: idArb,
  payload: bytes(12),
});
const encode = (frames: readonly WireFrame[]): Buffer =>
  Buffer.concat(frames.map((f) => encodeFrame(f.type, f.id, f.payload)));

/** `wire` cut at arbitrary points. */
function split(wire: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const to of [...at, wire.length]) {
    if (to > from) chunks.push(wire.subarray(from, to));
    from = to;
  }
  return chunks;
}
const cutsArb = fc.array(fc.nat(), { maxLength: 40, size: 'max' });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}
async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * One end of a guest's channel (by default the admin domain's), with two servers waiting for the
 * other end and one open of its own in flight.
 */
function hostEnd(side: ChannelSide = 'host') {
  const sentWire: Buffer[] = [];
  const logs: string[] = [];
  const mux = new ChannelMux(side, side === 'host' ? 'vm' : '0', (m) => logs.push(m));
  mux.attach((b) => sentWire.push(b));
  const streams: MuxVchan[] = [512, 513].map((port) => mux.listen(port, RINGS).vchan);
  mux.open(600, RINGS).then(
    (v) => void streams.push(v),
    () => undefined,
  );
  const sent = (): Frame[] => new FrameDecoder().push(Buffer.concat(sentWire));
  /** Lets the end's own open resolve if the other end accepted it. */
  const settled = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  return { mux, streams, logs, sent, settled };
}

/** What an end did, comparable across runs (HELLO carries a random nonce). */
function observe(end: ReturnType<typeof hostEnd>): unknown {
  return {
    sent: end
      .sent()
      .map((f) => [f.type, f.id, f.type === FrameType.HELLO ? f.payload[8] : f.payload.toString('hex')]),
    streams: end.streams.map((s) => [s.state(), s.id, s.readableLength]),
    logs: end.logs,
  };
}

describe('KVM vchan frames', () => {
  it('decode what was encoded, byte for byte, however the stream is cut', () => {
    fc.assert(
      fc.property(fc.array(framedArb, { maxLength: 30, size: 'max' }), cutsArb, (frames, cuts) => {
        const wire = encode(frames);
        const decoder = new FrameDecoder();
        const got = split(wire, cuts).flatMap((c) => decoder.push(c));
        expect(got.map((f) => [f.type, f.id, f.payload.toString('hex')])).toEqual(
          frames.map((f) => [f.type, f.id, f.payload.toString('hex')]),
        );
        expect(Buffer.concat(got.map((f) => encodeFrame(f.type, f.id, f.payload))).equals(wire)).toBe(true);
      }),
    );
  });

  it('refuse a payload whose size does not fit its type, as soon as the header is there', () => {
    const wrong: [FrameType, number][] = [
      [FrameType.HELLO, 0],
      [FrameType.HELLO, 8],
      [FrameType.OPEN, 0],
      [FrameType.OPEN, 7],
      [FrameType.ACCEPT, 0],
      [FrameType.ACCEPT, 5],
      [FrameType.REFUSE, 1],
      [FrameType.CREDIT, 3],
      [FrameType.CLOSE, 4],
      [FrameType.DATA, 64 * 1024 + 1],
    ];
    for (const [type, length] of wrong) {
      const header = encodeFrame(type, 1, Buffer.alloc(length)).subarray(0, 9);
      expect(() => new FrameDecoder().push(header), `type ${type}, ${length} bytes`).toThrow(FrameError);
    }
    for (const [type, length] of [
      [FrameType.OPEN, 8],
      [FrameType.OPEN, 64 * 1024],
      [FrameType.DATA, 0],
    ] as const) {
      expect(new FrameDecoder().push(encodeFrame(type, 1, Buffer.alloc(length)))).toHaveLength(1);
    }
  });

  it('either give frames or throw FrameError, whatever the bytes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            bytes(40),
            framedArb.map((f) => encode([f])),
          ),
        ),
        (chunks) => {
          const decoder = new FrameDecoder();
          for (const chunk of chunks) {
            try {
              for (const f of decoder.push(chunk)) expect(f.payload.length).toBeLessThanOrEqual(64 * 1024);
            } catch (error) {
              expect(error).toBeInstanceOf(FrameError);
              decoder.reset();
            }
          }
        },
      ),
    );
  });
});

describe('KVM vchan channel ends against a hostile peer', () => {
  it.each(['host', 'guest'] as const)(
    'never throws out of receive(), answers only with well-formed frames, buffers at most the ring (%s end)',
    async (side) => {
      const item = fc.oneof(
        { weight: 8, arbitrary: framedArb.map((f) => encode([f])) },
        { weight: 1, arbitrary: misframedArb.map((f) => encode([f])) },
        { weight: 1, arbitrary: bytes(20) },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(item, { maxLength: 40, size: 'max' }), cutsArb, async (items, cuts) => {
          const end = hostEnd(side);
          for (const chunk of split(Buffer.concat(items), cuts)) {
            expect(() => end.mux.receive(chunk)).not.toThrow();
          }
          await end.settled();
          for (const f of end.sent()) {
            expect([
              FrameType.HELLO,
              FrameType.OPEN,
              FrameType.ACCEPT,
              FrameType.REFUSE,
              FrameType.CLOSE,
            ]).toContain(f.type);
            // An end takes the other's opens in the other's id space only.
            if (f.type === FrameType.ACCEPT) expect(f.id >= GUEST_ID).toBe(side === 'host');
          }
          for (const stream of end.streams) expect(stream.readableLength).toBeLessThanOrEqual(RING);
        }),
      );
    },
  );

  it('does the same with frames however they are cut, and buffers at most the ring', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(framedArb, { maxLength: 30, size: 'max' }), cutsArb, async (frames, cuts) => {
        // Both servers taken first, so that what follows meets open streams.
        const wire = Buffer.concat([
          encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(512, RING)),
          encodeFrame(FrameType.OPEN, GUEST_ID + 2, openPayload(513, RING)),
          encode(frames),
        ]);
        const whole = hostEnd();
        whole.mux.receive(wire);
        const cut = hostEnd();
        for (const chunk of split(wire, cuts)) cut.mux.receive(chunk);
        await Promise.all([whole.settled(), cut.settled()]);
        expect(observe(cut)).toEqual(observe(whole));
        for (const stream of whole.streams) expect(stream.readableLength).toBeLessThanOrEqual(RING);
      }),
    );
  });

  it('resets the session on an OPEN, ACCEPT or CREDIT too short to read, instead of throwing', () => {
    for (const [type, id] of [
      [FrameType.OPEN, GUEST_ID + 1],
      [FrameType.ACCEPT, 1],
      [FrameType.CREDIT, GUEST_ID + 5],
    ] as const) {
      const end = hostEnd();
      end.mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 5, openPayload(512, RING)));
      expect(end.streams[0]?.state()).toBe('connected');
      expect(() => end.mux.receive(encodeFrame(type, id, Buffer.alloc(2)))).not.toThrow();
      expect(end.streams[0]?.state()).toBe('disconnected');
      expect(end.logs).toEqual([expect.stringMatching(/^vchan channel to vm: .*; resetting$/)]);
    }
  });

  it('closes a stream given DATA beyond the credit it granted, keeping what came within, and only that stream', () => {
    const end = hostEnd();
    const [server, other] = end.streams as [MuxVchan, MuxVchan];
    end.mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(512, RING)));
    end.mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 2, openPayload(513, RING)));
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 1, Buffer.alloc(RING - 1, 1)));
    expect(server.readableLength).toBe(RING - 1);
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 1, Buffer.alloc(2, 2)));
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 1, Buffer.alloc(2, 2)));
    expect(server.readableLength).toBe(RING - 1);
    expect(server.state()).toBe('disconnected');
    expect(end.sent().at(-1)).toMatchObject({ type: FrameType.CLOSE, id: GUEST_ID + 1 });
    expect(end.logs).toEqual(['vchan vm:512: DATA beyond the credit granted; closed']);
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 2, Buffer.alloc(RING, 3)));
    expect([other.state(), other.readableLength]).toEqual(['connected', RING]);
    // What the reader consumed is credit again, and only that.
    expect((other.read(1000) as Buffer).length).toBe(1000);
    expect(end.sent().at(-1)).toMatchObject({ type: FrameType.CREDIT, id: GUEST_ID + 2, payload: u32(1000) });
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 2, Buffer.alloc(1000, 3)));
    expect(other.state()).toBe('connected');
    end.mux.receive(encodeFrame(FrameType.DATA, GUEST_ID + 2, Buffer.alloc(1, 3)));
    expect([other.state(), other.readableLength]).toEqual(['disconnected', RING]);
  });

  it("keeps its own opens apart from the guest's: an OPEN in the host's id space is refused", () => {
    const end = hostEnd();
    const [server] = end.streams as [MuxVchan];
    // The host's open of port 600 is id 1; the guest opens 512 with that id, then accepts "its" open.
    end.mux.receive(encodeFrame(FrameType.OPEN, 1, openPayload(512, RING)));
    expect(end.sent().at(-1)).toMatchObject({ type: FrameType.REFUSE, id: 1 });
    expect(server.state()).toBe('waiting');
  });

  it('tells the peer when bytes make no sense: a new session, so its streams with this end close too', async () => {
    const host = new ChannelMux('host', 'vm');
    const guest = new ChannelMux('guest', ADMIN_DOMAIN);
    host.attach((bytes) => guest.receive(bytes));
    guest.attach((bytes) => host.receive(bytes));
    const bound = guest.listen(512, RINGS);
    const client = await host.open(512, RINGS);
    const served = await bound.connected;
    host.receive(Buffer.alloc(HEADER_SIZE, 0xff));
    expect([client.state(), served.state()]).toEqual(['disconnected', 'disconnected']);
    // The session goes on: new streams open.
    const again = guest.listen(512, RINGS);
    await host.open(512, RINGS);
    expect((await again.connected).state()).toBe('connected');
  });

  it('holds DATA while its link is full, and gives each held stream its turn when it drains', async () => {
    const ids: number[] = [];
    const mux = new ChannelMux('host', 'vm');
    // A link that takes one DATA frame, then is full until release().
    mux.attach((bytes) => {
      const [frame] = new FrameDecoder().push(bytes);
      if (frame?.type !== FrameType.DATA) return;
      ids.push(frame.id);
      mux.hold();
    });
    const [a, b] = [512, 513].map((port) => mux.listen(port, RINGS).vchan) as [MuxVchan, MuxVchan];
    mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(512, 0xffffffff)));
    mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 2, openPayload(513, 0xffffffff)));
    const written: number[] = [];
    // Four frames' worth each.
    a.write(Buffer.alloc(4 * MAX_DATA, 1), () => written.push(GUEST_ID + 1));
    b.write(Buffer.alloc(4 * MAX_DATA, 2), () => written.push(GUEST_ID + 2));
    await tick();
    // a's first frame went before the link filled; nothing else goes until it drains, and no
    // stream opens meanwhile either.
    expect([ids, written]).toEqual([[GUEST_ID + 1], []]);
    await expect(mux.open(600, RINGS)).rejects.toThrow(OpenRefused);
    for (let drains = 0; ids.length < 8 && drains < 8; drains++) {
      mux.release();
      await tick();
    }
    const [A, B] = [GUEST_ID + 1, GUEST_ID + 2];
    expect(ids).toEqual([A, A, B, A, B, A, B, B]);
    expect(written).toEqual([A, B]);
  });
});

describe('KVM vchan relay against a hostile guest', () => {
  /** A host end whose relay hands out streams on demand, each resolved by `answer()`. */
  function relayingEnd() {
    const sentWire: Buffer[] = [];
    const asked: { far: MuxVchan; answer: () => void }[] = [];
    const mux = new ChannelMux('host', 'vm', () => undefined, {
      connect: (_source, target, port) => {
        const channel = new ChannelMux('host', target);
        const far = new MuxVchan(target, port, RINGS);
        far.connect(channel, 9, RING);
        return new Promise((resolve) =>
          asked.push({ far, answer: () => resolve({ stream: far, target: channel }) }),
        );
      },
      timeoutMs: 10_000,
      maxInFlight: 32,
      maxStreams: 256,
    });
    mux.attach((bytes) => sentWire.push(bytes));
    const sent = (): [number, number][] =>
      new FrameDecoder().push(Buffer.concat(sentWire)).map((f) => [f.type, f.id]);
    return { mux, asked, sent };
  }

  it('refuses an OPEN whose id is still being relayed, so the first relayed stream keeps its end', async () => {
    const end = relayingEnd();
    const open = encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(700, RING, 'b'));
    end.mux.receive(open);
    end.mux.receive(open);
    await tick();
    expect(end.asked).toHaveLength(1);
    expect(end.sent().slice(1)).toEqual([[FrameType.REFUSE, GUEST_ID + 1]]);
    end.asked[0]?.answer();
    await tick();
    expect(end.sent().slice(2)).toEqual([[FrameType.ACCEPT, GUEST_ID + 1]]);
    // The guest's CLOSE reaches the relayed stream: it is the one the id names.
    end.mux.receive(encodeFrame(FrameType.CLOSE, GUEST_ID + 1));
    await tick();
    expect(end.asked[0]?.far.writableEnded).toBe(true);
  });

  it('drops a relayed stream whose session ended before the relay answered', async () => {
    const end = relayingEnd();
    end.mux.receive(encodeFrame(FrameType.HELLO, 0, hello(1, 1)));
    end.mux.receive(encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(700, RING, 'b')));
    await tick();
    // The guest restarts (a new nonce) while the relay is under way.
    end.mux.receive(encodeFrame(FrameType.HELLO, 0, hello(2, 1)));
    end.asked[0]?.answer();
    await tick();
    expect(end.sent().slice(1)).toEqual([]);
    expect(end.asked[0]?.far.destroyed).toBe(true);
  });
});

describe('KVM vchan host transport against a hostile guest', () => {
  interface Guests {
    readonly host: KvmHostTransport;
    readonly b: ChannelMux;
    /** The host end of evil's channel once connected, and the frames the host sent it. */
    readonly evil: () => Socket | undefined;
    readonly toEvil: Frame[];
    /** Every domain whose channel socket the host looked up. */
    readonly dialed: string[];
  }

  // Guest b is well-behaved; guest "evil" writes `wire` into its port as soon as the host connects.
  async function withGuests(wire: Buffer, body: (guests: Guests) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'kvm-hostile-'));
    const servers: Server[] = [];
    const links: Socket[] = [];
    const b = new ChannelMux('guest', '0');
    let evilLink: Socket | undefined;
    const toEvil: Frame[] = [];
    const dialed: string[] = [];
    const listen = async (name: string, onLink: (s: Socket) => void): Promise<void> => {
      const server = createServer((s) => {
        links.push(s);
        s.on('error', () => undefined);
        onLink(s);
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(join(dir, `${name}.sock`), resolve));
    };
    await listen('b', (s) => {
      if (b.linked) b.detach();
      b.attach((bytes) => s.write(bytes));
      s.on('data', (chunk: Buffer) => b.receive(chunk));
      s.on('close', () => b.detach());
    });
    await listen('evil', (s) => {
      evilLink = s;
      const decoder = new FrameDecoder();
      s.on('data', (chunk: Buffer) => toEvil.push(...decoder.push(chunk)));
      s.write(wire);
    });
    const host = new KvmHostTransport({
      channelSocket: (d) => {
        dialed.push(d);
        return join(dir, `${d}.sock`);
      },
      connectTimeoutMs: 1000,
      retryIntervalMs: 5,
      relay: true,
    });
    try {
      await body({ host, b, evil: () => evilLink, toEvil, dialed });
    } finally {
      host.close();
      links.forEach((s) => s.destroy());
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      await rm(dir, { recursive: true, force: true });
    }
  }

  it("is not brought down by a guest's short OPEN, which ends that guest's relays and nothing else", async () => {
    const relayOpen = encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(700, RING, 'b'));
    await withGuests(
      Buffer.concat([encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpen]),
      async ({ host, b, evil }) => {
        const toB = b.listen(512, RINGS);
        const relayed = b.listen(700, RINGS, 'evil');
        const keep = host.keepChannel('evil');
        const [bServer, bClient] = await Promise.all([toB.connected, host.connect('b', 512)]);
        try {
          const fromEvil = await relayed.connected;
          fromEvil.resume();
          const ended = once(fromEvil, 'end');
          evil()?.write(encodeFrame(FrameType.OPEN, GUEST_ID + 2, Buffer.alloc(0)));
          await ended;
          expect(fromEvil.state()).toBe('disconnected');
          bClient.write('still there');
          const [data] = (await once(bServer, 'data')) as [Buffer];
          expect(data.toString()).toBe('still there');
          expect(bClient.state()).toBe('connected');
        } finally {
          keep();
          for (const v of [bServer, bClient, relayed.vchan]) v.destroy();
        }
      },
    );
  }, 5000);

  it('gives up a connect at its deadline when the guest never answers, and closes a late ACCEPT', async () => {
    await withGuests(encodeFrame(FrameType.HELLO, 0, hello(7)), async ({ host, evil, toEvil }) => {
      await expect(host.connect('evil', 512, { timeoutMs: 50 })).rejects.toThrow(
        'timed out connecting to vchan evil:512',
      );
      const open = (): Frame | undefined => toEvil.find((f) => f.type === FrameType.OPEN);
      while (!open()) await tick();
      const id = open()?.id ?? 0;
      evil()?.write(encodeFrame(FrameType.ACCEPT, id, u32(RING)));
      while (!toEvil.some((f) => f.type === FrameType.CLOSE && f.id === id)) await tick();
    });
  }, 5000);

  it("gives up a connect at its deadline while the guest's channel is still being looked up", async () => {
    let lookups = 0;
    const host = new KvmHostTransport({
      // A VMM that never says where the guest's channel is.
      channelSocket: () => {
        lookups++;
        return new Promise<string>(() => undefined);
      },
      connectTimeoutMs: 50,
      retryIntervalMs: 5,
    });
    try {
      await expect(host.connect('b', 512)).rejects.toThrow('timed out connecting to vchan b:512');
      // The attempts all waited on the one lookup, which goes on for whoever connects next.
      expect(lookups).toBe(1);
      await expect(host.connect('b', 512, { timeoutMs: 20 })).rejects.toThrow(
        'timed out connecting to vchan b:512',
      );
      expect(lookups).toBe(1);
    } finally {
      host.close();
    }
  }, 5000);

  it('relays only to guests it has a channel to, never dialling a name the guest made up', async () => {
    const madeUp = ['nobody', '../../../tmp/elsewhere', 'x'.repeat(60_000)];
    const opens = madeUp.map((name, i) =>
      encodeFrame(FrameType.OPEN, GUEST_ID + 1 + i, openPayload(700, RING, name)),
    );
    await withGuests(Buffer.concat([encodeFrame(FrameType.HELLO, 0, hello(7)), ...opens]), async (guests) => {
      const keep = guests.host.keepChannel('evil');
      try {
        while (guests.toEvil.filter((f) => f.type === FrameType.REFUSE).length < madeUp.length) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        expect(guests.toEvil.filter((f) => f.type !== FrameType.HELLO).map((f) => [f.type, f.id])).toEqual(
          madeUp.map((_, i) => [FrameType.REFUSE, GUEST_ID + 1 + i]),
        );
        expect(new Set(guests.dialed)).toEqual(new Set(['evil']));
      } finally {
        keep();
      }
    });
  }, 5000);
});

/** Before any test watches what sockets queue. */
const socketWrite = Socket.prototype.write;

describe('KVM vchan host transport against a guest that does not read', () => {
  const LIMIT = 64 * 1024;
  // Past the limit come at most the frame that crossed it and the answers to the rest of the
  // chunk being read, each no bigger than a chunk (64 KiB) or a DATA frame.
  const BOUND = LIMIT + 2 * (HEADER_SIZE + MAX_DATA);

  interface Silent {
    readonly host: KvmHostTransport;
    /** Guest "evil"'s end of its channel once the host dialled it: nothing reads it until the test does. */
    readonly evil: () => Promise<Socket>;
    /** The host's end of evil's channel, once its queue reached the limit (b's never does). */
    readonly hostSide: () => Socket | undefined;
    /** The most any host socket ever had queued right after a write. */
    readonly peak: () => number;
    /** Bytes the host wrote into `socket`. */
    readonly sent: (socket: Socket | undefined) => number;
    /** Guest b, well-behaved. */
    readonly b: ChannelMux;
  }

  async function withSilentGuest(body: (guests: Silent) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'kvm-silent-'));
    const guestEnds = new Set<Socket>();
    // Of the host's sockets: what each had queued at most, and what was written into it.
    const peaks = new Map<Socket, number>();
    const sent = new Map<Socket | undefined, number>();
    const spy = vi.spyOn(Socket.prototype, 'write').mockImplementation(function (
      this: Socket,
      ...args: unknown[]
    ): boolean {
      const accepted = Reflect.apply(socketWrite, this, args) as boolean;
      if (guestEnds.has(this)) return accepted;
      peaks.set(this, Math.max(peaks.get(this) ?? 0, this.writableLength));
      sent.set(this, (sent.get(this) ?? 0) + (args[0] as Buffer).length);
      return accepted;
    });
    const b = new ChannelMux('guest', ADMIN_DOMAIN);
    let evil: (s: Socket) => void = () => undefined;
    const evilLink = new Promise<Socket>((resolve) => (evil = resolve));
    const servers = [
      createServer((s) => {
        guestEnds.add(s);
        evil(s);
      }),
      createServer((s) => {
        guestEnds.add(s);
        b.attach((bytes) => s.write(bytes));
        s.on('data', (chunk: Buffer) => b.receive(chunk));
        s.on('close', () => b.detach());
      }),
    ];
    await Promise.all(
      servers.map(
        (server, i) =>
          new Promise<void>((resolve) => server.listen(join(dir, `${['evil', 'b'][i]}.sock`), resolve)),
      ),
    );
    const host = new KvmHostTransport({
      channelSocket: (d) => join(dir, `${d}.sock`),
      connectTimeoutMs: 2000,
      retryIntervalMs: 5,
      relay: true,
      maxQueuedBytes: LIMIT,
    });
    const hostSide = (): Socket | undefined => [...peaks].find(([, n]) => n >= LIMIT)?.[0];
    const peak = (): number => Math.max(0, ...peaks.values());
    try {
      await body({ host, evil: () => evilLink, hostSide, peak, sent: (socket) => sent.get(socket) ?? 0, b });
    } finally {
      spy.mockRestore();
      host.close();
      guestEnds.forEach((s) => s.destroy());
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** `count` OPENs for a port nobody serves, each answered by a REFUSE, with ids from `first`. */
  function opens(count: number, first: number): Buffer {
    const one = encodeFrame(FrameType.OPEN, 0, openPayload(999, RING));
    const wire = Buffer.alloc(count * one.length);
    for (let i = 0; i < count; i++) {
      one.copy(wire, i * one.length);
      wire.writeUInt32BE(first + i, i * one.length + 1);
    }
    return wire;
  }

  /** What a guest reads of its channel, when the test has it read. */
  function reader(guest: Socket) {
    const frames: Frame[] = [];
    const decoder = new FrameDecoder();
    const onData = (chunk: Buffer): void => void frames.push(...decoder.push(chunk));
    return {
      frames,
      /** Reads until `done` holds for what came, then stops reading again. */
      async until(done: (frames: Frame[]) => boolean): Promise<void> {
        guest.on('data', onData);
        guest.resume();
        await until(() => done(frames));
        guest.pause();
        guest.off('data', onData);
      },
    };
  }

  it('stops reading a guest that sends OPENs without reading the REFUSEs, and answers each once it reads', async () => {
    const count = 200_000;
    const flood = Buffer.concat([encodeFrame(FrameType.HELLO, 0, hello(7)), opens(count, GUEST_ID + 1)]);
    await withSilentGuest(async (guests) => {
      const keep = guests.host.keepChannel('evil');
      try {
        const evil = await guests.evil();
        evil.write(flood);
        // Until the host stopped reading, or (unbounded) answered the whole flood into its queue:
        // 1.8 MB of REFUSEs, far more than the kernel's socket buffers take.
        await until(
          () => guests.hostSide()?.isPaused() === true || guests.hostSide()?.bytesRead === flood.length,
        );
        expect(guests.hostSide()?.bytesRead).toBeLessThan(flood.length);
        expect(guests.peak()).toBeLessThanOrEqual(BOUND);
        const fromHost = reader(evil);
        await fromHost.until((got) => got.length >= count + 2);
        const answers = fromHost.frames.filter((f) => f.type !== FrameType.HELLO);
        expect(answers).toHaveLength(count);
        expect(answers.every((f, i) => f.type === FrameType.REFUSE && f.id === GUEST_ID + 1 + i)).toBe(true);
        expect(guests.peak()).toBeLessThanOrEqual(BOUND);
      } finally {
        keep();
      }
    });
  }, 20_000);

  it('holds a writer to a guest that grants credit without reading, and delivers every byte once it reads', async () => {
    const total = 8 << 20;
    const data = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4) data.writeUInt32BE(i, i);
    await withSilentGuest(async (guests) => {
      const connected = guests.host.connect('evil', 512);
      const evil = await guests.evil();
      const fromHost = reader(evil);
      await fromHost.until((got) => got.some((f) => f.type === FrameType.OPEN));
      const id = fromHost.frames.find((f) => f.type === FrameType.OPEN)?.id ?? 0;
      // All the credit there is, from a guest that does not read.
      const credit = encodeFrame(FrameType.CREDIT, id, u32(0xffffffff));
      evil.write(Buffer.concat([encodeFrame(FrameType.ACCEPT, id, u32(RING)), credit, credit, credit]));
      const vchan = await connected;
      let written = 0;
      const writing = (async () => {
        for (let at = 0; at < total; at += MAX_DATA) {
          const chunk = data.subarray(at, at + MAX_DATA);
          if (!vchan.write(chunk, () => (written += chunk.length))) await once(vchan, 'drain');
        }
      })();
      // Until the writer waits on a host that stopped reading, or (unbounded) wrote it all.
      await until(
        () => written === total || (guests.hostSide()?.isPaused() === true && vchan.writableNeedDrain),
      );
      expect(written).toBeLessThan(total);
      expect(guests.peak()).toBeLessThanOrEqual(BOUND);
      const payloads = (): Buffer[] =>
        fromHost.frames.filter((f) => f.type === FrameType.DATA && f.id === id).map((f) => f.payload);
      await fromHost.until(() => payloads().reduce((n, p) => n + p.length, 0) >= total);
      await writing;
      expect(Buffer.concat(payloads()).equals(data)).toBe(true);
      expect(written).toBe(total);
      expect(guests.peak()).toBeLessThanOrEqual(BOUND);
      vchan.destroy();
    });
  }, 20_000);

  it('goes on with other guests meanwhile, and refuses their relays to the held guest at once', async () => {
    const flood = Buffer.concat([encodeFrame(FrameType.HELLO, 0, hello(7)), opens(200_000, GUEST_ID + 1)]);
    const rings = { readRing: 65536, writeRing: 65536 };
    await withSilentGuest(async (guests) => {
      const keep = [guests.host.keepChannel('evil'), guests.host.keepChannel('b')];
      try {
        (await guests.evil()).write(flood);
        await until(
          () => guests.hostSide()?.isPaused() === true || guests.hostSide()?.bytesRead === flood.length,
        );
        const evilEnd = guests.hostSide();
        expect(evilEnd?.isPaused()).toBe(true);
        const toEvil = guests.sent(evilEnd);
        const bound = guests.b.listen(512, rings);
        const client = await guests.host.connect('b', 512);
        const served = await bound.connected;
        const data = randomBytes(1 << 20);
        const echoed: Buffer[] = [];
        let length = 0;
        client.on('data', (chunk: Buffer) => {
          echoed.push(chunk);
          length += chunk.length;
        });
        served.pipe(served);
        client.write(data);
        await until(() => length >= data.length);
        expect(Buffer.concat(echoed).equals(data)).toBe(true);
        // A relay would be one more OPEN in evil's queue, with no answer read.
        await expect(guests.b.open(700, rings, 'evil', 'evil')).rejects.toThrow(OpenRefused);
        expect([evilEnd?.isPaused(), guests.sent(evilEnd)]).toEqual([true, toEvil]);
      } finally {
        keep.forEach((release) => release());
      }
    });
  }, 20_000);

  it("still reads a held guest's last frames once it is gone", async () => {
    await withSilentGuest(async (guests) => {
      const listening = guests.host.listen('evil', 512);
      const evil = await guests.evil();
      const send = (bytes: Buffer): Promise<void> =>
        new Promise((resolve) => evil.write(bytes, () => resolve()));
      await send(
        Buffer.concat([
          encodeFrame(FrameType.HELLO, 0, hello(7)),
          encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(512, RING)),
        ]),
      );
      const server = await listening;
      // OPENs a batch at a time, each once the last is in the kernel, until the host stops reading.
      for (let batch = 0; batch < 200 && guests.hostSide()?.isPaused() !== true; batch++) {
        await send(opens(1000, GUEST_ID + 2 + batch * 1000));
      }
      await send(encodeFrame(FrameType.DATA, GUEST_ID + 1, Buffer.from('last words')));
      evil.destroy();
      expect((await readAll(server)).toString()).toBe('last words');
      expect(server.state()).toBe('disconnected');
      expect(guests.peak()).toBeLessThanOrEqual(BOUND);
    });
  }, 20_000);
});

describe('KVM vchan host transport against a guest flooding relays', () => {
  /** How a guest answers the host's OPENs: not at all (though it reads its port), REFUSE or ACCEPT. */
  type Answer = 'none' | 'refuse' | 'accept';

  /** A guest played frame by frame over a real socket, as QEMU's chardev would carry it. */
  interface RawGuest {
    /** Every frame the host sent it, over all its links. */
    readonly frames: Frame[];
    answer: Answer;
    /** Its current link to the host. */
    readonly link: () => Socket | undefined;
    readonly write: (...frames: Buffer[]) => void;
  }

  interface Bookkeeping {
    readonly streams: Map<number, unknown>;
    readonly opening: Map<number, unknown>;
    readonly relaying: Map<number, unknown>;
    readonly waiting: Set<unknown>;
    readonly relaysInFlight: number;
    readonly relaysJoined: number;
    readonly stranded: Set<unknown>;
  }

  interface Flood {
    readonly evil: RawGuest;
    readonly b: RawGuest;
    readonly c: RawGuest;
    /** What the host keeps for a guest's channel: entries of the mux's private maps. */
    readonly kept: (domain: string) => Record<keyof Bookkeeping, number>;
  }

  const EMPTY = {
    streams: 0,
    opening: 0,
    relaying: 0,
    waiting: 0,
    relaysInFlight: 0,
    relaysJoined: 0,
    stranded: 0,
  };
  const HOST_RING = 64 * 1024;

  async function withFlood(
    options: {
      maxRelaysInFlight?: number;
      maxRelayedStreams?: number;
      connectTimeoutMs?: number;
      /** Until this settles, the host's lookup of b's channel socket is under way (a VMM slow to answer). */
      lookupB?: Promise<void>;
    },
    body: (flood: Flood) => Promise<void>,
  ): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'kvm-flood-'));
    const attach = vi.spyOn(ChannelMux.prototype, 'attach');
    const links: Socket[] = [];
    const servers: Server[] = [];
    const guest = async (name: string): Promise<RawGuest> => {
      let link: Socket | undefined;
      const g: RawGuest = {
        frames: [],
        answer: 'none',
        link: () => link,
        write: (...frames) => link?.write(Buffer.concat(frames)),
      };
      const server = createServer((s) => {
        links.push(s);
        link = s;
        s.on('error', () => undefined);
        const decoder = new FrameDecoder();
        s.on('data', (chunk: Buffer) => {
          for (const f of decoder.push(chunk)) {
            g.frames.push(f);
            if (f.type !== FrameType.OPEN || g.answer === 'none') continue;
            s.write(
              g.answer === 'accept'
                ? encodeFrame(FrameType.ACCEPT, f.id, u32(RING))
                : encodeFrame(FrameType.REFUSE, f.id),
            );
          }
        });
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(join(dir, `${name}.sock`), resolve));
      return g;
    };
    const [evil, b, c] = [await guest('evil'), await guest('b'), await guest('c')];
    const host = new KvmHostTransport({
      ...options,
      channelSocket: async (d) => {
        if (d === 'b') await options.lookupB;
        return join(dir, `${d}.sock`);
      },
      // Long enough that only the path under test frees a relay in flight.
      connectTimeoutMs: options.connectTimeoutMs ?? 60_000,
      retryIntervalMs: 5,
      relay: true,
    });
    const kept = (domain: string): Record<keyof Bookkeeping, number> => {
      // The newest: a test that timed out before its spy was restored leaves its muxes first.
      const mux = (attach.mock.contexts as ChannelMux[]).findLast((m) => m.remoteDomain === domain);
      const k = mux as unknown as Bookkeeping;
      return {
        streams: k.streams.size,
        opening: k.opening.size,
        relaying: k.relaying.size,
        waiting: k.waiting.size,
        relaysInFlight: k.relaysInFlight,
        relaysJoined: k.relaysJoined,
        stranded: k.stranded.size,
      };
    };
    const keep = ['evil', 'b', 'c'].map((d) => host.keepChannel(d));
    try {
      await until(
        () =>
          evil.link() !== undefined &&
          c.link() !== undefined &&
          (b.link() !== undefined || options.lookupB !== undefined),
      );
      await body({ evil, b, c, kept });
    } finally {
      keep.forEach((release) => release());
      host.close();
      attach.mockRestore();
      links.forEach((s) => s.destroy());
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** `count` OPENs of port 700 on guest b, with ids GUEST_ID + first, first + 1, ... */
  const relayOpens = (count: number, first: number): Buffer =>
    Buffer.concat(
      Array.from({ length: count }, (_, i) =>
        encodeFrame(FrameType.OPEN, GUEST_ID + first + i, openPayload(700, RING, 'b')),
      ),
    );
  const ofType = (frames: readonly Frame[], type: FrameType, from = 0): Frame[] =>
    frames.slice(from).filter((f) => f.type === type);
  const ids = (count: number, first: number): number[] =>
    Array.from({ length: count }, (_, i) => GUEST_ID + first + i);
  /** The OPEN guest b gets for a relay from evil: port 700, the host's ring as window, from "evil". */
  const relayedOpen = openPayload(700, HOST_RING, 'evil').toString('hex');
  /** The bytes `guest` was sent on stream `id`. */
  const received = (guest: RawGuest, id: number): Buffer =>
    Buffer.concat(guest.frames.filter((f) => f.type === FrameType.DATA && f.id === id).map((f) => f.payload));
  /** The host's answer to `guest`'s OPEN `id`, once there is one. */
  async function answer(guest: RawGuest, id: number): Promise<FrameType> {
    const of = (f: Frame): boolean =>
      f.id === id && (f.type === FrameType.ACCEPT || f.type === FrameType.REFUSE);
    await until(() => guest.frames.some(of));
    return (guest.frames.find(of) as Frame).type;
  }

  it('refuses at once the relays a guest has in flight beyond maxRelaysInFlight (default 32), its target never answering', async () => {
    await withFlood({}, async ({ evil, b, kept }) => {
      evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(1000, 1));
      // Until every OPEN was refused or reached b (unbounded: all 1000 reach b).
      await until(
        () => ofType(evil.frames, FrameType.REFUSE).length + ofType(b.frames, FrameType.OPEN).length >= 1000,
      );
      const opens = ofType(b.frames, FrameType.OPEN);
      expect(opens).toHaveLength(32);
      expect(opens.every((f) => f.payload.toString('hex') === relayedOpen)).toBe(true);
      expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual(ids(968, 33));
      expect(kept('evil')).toEqual({ ...EMPTY, relaying: 32, relaysInFlight: 32 });
      expect(kept('b')).toEqual({ ...EMPTY, opening: 32 });
    });
  }, 10_000);

  it('refuses at once the relays a guest has beyond maxRelayedStreams (default 256), in flight or joined', async () => {
    await withFlood({}, async ({ evil, b, kept }) => {
      b.answer = 'accept';
      let first = 1;
      // Rounds of 32 OPENs, each once the last was answered, until one is refused whole (unbounded: never).
      for (let round = 0; round < 12; round++, first += 32) {
        evil.write(relayOpens(32, first));
        const answered = (): Frame[] => evil.frames.filter((f) => f.id >= GUEST_ID + first);
        await until(() => answered().length >= 32);
        if (answered().every((f) => f.type === FrameType.REFUSE)) break;
      }
      expect(ofType(b.frames, FrameType.OPEN)).toHaveLength(256);
      expect(ofType(evil.frames, FrameType.ACCEPT).map((f) => f.id)).toEqual(ids(256, 1));
      expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual(ids(32, 257));
      expect(kept('evil')).toEqual({ ...EMPTY, streams: 256, relaysJoined: 256 });
      expect(kept('b')).toEqual({ ...EMPTY, streams: 256 });
    });
  }, 10_000);

  // maxRelaysInFlight 4: a flood of 20 leaves 4 in flight.
  it.each([
    ['the target refuses them', 'refuse'],
    ['the target goes', 'target gone'],
    ['the source goes', 'source gone'],
    ['the source sends bytes that make no sense', 'corrupt'],
    ['the source starts a new session', 'new session'],
    ['they time out', 'timeout'],
  ] as const)(
    'frees the relays in flight when %s, and relays again',
    async (_, path) => {
      const options = {
        maxRelaysInFlight: 4,
        maxRelayedStreams: 8,
        connectTimeoutMs: path === 'timeout' ? 300 : undefined,
      };
      await withFlood(options, async ({ evil, b, kept }) => {
        b.answer = path === 'refuse' ? 'refuse' : 'none';
        evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(20, 1));
        await until(
          () =>
            ofType(b.frames, FrameType.OPEN).length >= 4 &&
            ofType(evil.frames, FrameType.REFUSE).length >= 16,
        );
        expect(ofType(b.frames, FrameType.OPEN).map((f) => f.payload.toString('hex'))).toEqual(
          Array(4).fill(relayedOpen),
        );
        const [evilLink, bLink] = [evil.link(), b.link()];
        const hellos = ofType(evil.frames, FrameType.HELLO).length;
        switch (path) {
          case 'target gone':
            bLink?.destroy();
            break;
          case 'source gone':
            evilLink?.destroy();
            break;
          case 'corrupt':
            evil.write(Buffer.alloc(HEADER_SIZE, 0xff));
            break;
          case 'new session':
            evil.write(encodeFrame(FrameType.HELLO, 0, hello(8)));
            break;
        }
        if (path === 'source gone' || path === 'corrupt' || path === 'new session') {
          // The source's session is gone: the target keeps no OPEN for it, at once (not at the timeout).
          await until(() =>
            path === 'source gone'
              ? evil.link() !== evilLink
              : ofType(evil.frames, FrameType.HELLO).length > hellos,
          );
          expect(kept('b').opening).toBe(0);
        } else {
          // Each OPEN refused: 16 at once, the 4 in flight by b, its going, or the timeout.
          await until(() => ofType(evil.frames, FrameType.REFUSE).length >= 20);
          expect(
            ofType(evil.frames, FrameType.REFUSE)
              .map((f) => f.id)
              .sort((x, y) => x - y),
          ).toEqual(ids(20, 1));
        }
        // A guest gone is back once the host redialled the channel it keeps.
        await until(() => b.link() !== bLink || path !== 'target gone');
        await until(() => kept('evil').relaysInFlight === 0);
        expect([kept('evil'), kept('b')]).toEqual([EMPTY, EMPTY]);
        await relaysAgain(evil, b, 4);
      });
    },
    10_000,
  );

  it('gives up at its deadline a relay still waiting for its target to be found, freeing its slot', async () => {
    let found = (): void => undefined;
    const lookupB = new Promise<void>((resolve) => (found = resolve));
    const options = { maxRelaysInFlight: 2, maxRelayedStreams: 4, connectTimeoutMs: 200, lookupB };
    await withFlood(options, async ({ evil, b, kept }) => {
      evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(4, 1));
      // Two in flight, waiting on the lookup of b's channel; the two beyond refused at once.
      await until(() => ofType(evil.frames, FrameType.REFUSE).length >= 2);
      expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual(ids(2, 3));
      expect(kept('evil')).toEqual({ ...EMPTY, relaying: 2, relaysInFlight: 2 });
      // At the deadline both are refused and their slots free, the lookup still under way
      // (unbounded: only once the lookup ends, however long that takes).
      await until(() => ofType(evil.frames, FrameType.REFUSE).length >= 4);
      expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual([...ids(2, 3), ...ids(2, 1)]);
      expect(kept('evil')).toEqual(EMPTY);
      expect([b.link(), b.frames]).toEqual([undefined, []]);
      // Once b is found, its channel comes up and relays go through again.
      found();
      await until(() => b.link() !== undefined);
      await relaysAgain(evil, b, 2);
    });
  }, 5_000);

  // maxRelayedStreams 8: two rounds of 4 join 8 relays, a third is refused whole.
  it.each([
    ['the source closes them', 'source closes'],
    ['the target closes them', 'target closes'],
    ['the target goes', 'target gone'],
    ['the source goes', 'source gone'],
    ['the source sends bytes that make no sense', 'corrupt'],
  ] as const)(
    'frees the relays joined when %s, and relays again',
    async (_, path) => {
      await withFlood({ maxRelaysInFlight: 4, maxRelayedStreams: 8 }, async ({ evil, b, kept }) => {
        b.answer = 'accept';
        evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)));
        for (const first of [1, 5, 9]) {
          evil.write(relayOpens(4, first));
          await until(() => evil.frames.filter((f) => f.id >= GUEST_ID + first).length >= 4);
        }
        expect(ofType(evil.frames, FrameType.ACCEPT).map((f) => f.id)).toEqual(ids(8, 1));
        expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual(ids(4, 9));
        const far = ofType(b.frames, FrameType.OPEN).map((f) => f.id);
        expect(far).toHaveLength(8);
        // Bytes both ways on each relay before it ends.
        evil.write(...ids(8, 1).map((id, i) => encodeFrame(FrameType.DATA, id, Buffer.from(`to b ${i}`))));
        b.write(...far.map((id, i) => encodeFrame(FrameType.DATA, id, Buffer.from(`to evil ${i}`))));
        await until(
          () =>
            ofType(b.frames, FrameType.DATA).length >= 8 && ofType(evil.frames, FrameType.DATA).length >= 8,
        );
        expect(ofType(b.frames, FrameType.DATA).map((f) => [f.id, f.payload.toString()])).toEqual(
          far.map((id, i) => [id, `to b ${i}`]),
        );
        expect(ofType(evil.frames, FrameType.DATA).map((f) => [f.id, f.payload.toString()])).toEqual(
          ids(8, 1).map((id, i) => [id, `to evil ${i}`]),
        );
        expect([kept('evil').relaysJoined, kept('b').streams]).toEqual([8, 8]);
        const [evilLink, bLink] = [evil.link(), b.link()];
        switch (path) {
          case 'source closes':
            evil.write(...ids(8, 1).map((id) => encodeFrame(FrameType.CLOSE, id)));
            break;
          case 'target closes':
            b.write(...far.map((id) => encodeFrame(FrameType.CLOSE, id)));
            break;
          case 'target gone':
            bLink?.destroy();
            break;
          case 'source gone':
            evilLink?.destroy();
            break;
          case 'corrupt':
            evil.write(Buffer.alloc(HEADER_SIZE, 0xff));
            break;
        }
        // The end that stays is told, for each relay (a guest gone is told nothing: it is gone).
        if (path === 'source closes' || path === 'source gone' || path === 'corrupt') {
          await until(() => ofType(b.frames, FrameType.CLOSE).length >= 8);
          expect(ofType(b.frames, FrameType.CLOSE).map((f) => f.id)).toEqual(far);
        } else {
          await until(() => ofType(evil.frames, FrameType.CLOSE).length >= 8);
          expect(ofType(evil.frames, FrameType.CLOSE).map((f) => f.id)).toEqual(ids(8, 1));
        }
        await until(
          () =>
            (b.link() !== bLink || path !== 'target gone') &&
            (evil.link() !== evilLink || path !== 'source gone'),
        );
        await until(() => kept('evil').relaysJoined === 0);
        expect([kept('evil'), kept('b')]).toEqual([EMPTY, EMPTY]);
        await relaysAgain(evil, b, 4);
      });
    },
    10_000,
  );

  // maxRelayedStreams 1: the relay's slot is free again only if its bookkeeping went.
  it.each([
    ['the target goes with bytes of the source stuck in the relay', 'target gone'],
    ['the source goes with bytes of the target stuck in the relay', 'source gone'],
    [
      'the source goes with bytes stuck both ways, once the target took its last bytes',
      'source gone, target reads',
    ],
  ] as const)(
    'frees a relay when %s',
    async (_, path) => {
      await withFlood({ maxRelayedStreams: 1 }, async ({ evil, b, kept }) => {
        b.answer = 'accept';
        evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(1, 1));
        await until(() => ofType(evil.frames, FrameType.ACCEPT).length === 1);
        const [farId] = ofType(b.frames, FrameType.OPEN).map((f) => f.id) as [number];
        evil.write(relayOpens(1, 2));
        await until(() => evil.frames.some((f) => f.id === GUEST_ID + 2));
        expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual([GUEST_ID + 2]);
        // Three windows' worth each way; each guest granted one (RING) and never grants more.
        const [toB, toEvil] = [randomBytes(3 * RING), randomBytes(3 * RING)];
        if (path !== 'source gone') evil.write(encodeFrame(FrameType.DATA, GUEST_ID + 1, toB));
        if (path !== 'target gone') b.write(encodeFrame(FrameType.DATA, farId, toEvil));
        await until(
          () =>
            received(b, farId).length === (path === 'source gone' ? 0 : RING) &&
            received(evil, GUEST_ID + 1).length === (path === 'target gone' ? 0 : RING),
        );
        const [evilLink, bLink] = [evil.link(), b.link()];
        (path === 'target gone' ? bLink : evilLink)?.destroy();
        if (path === 'target gone') {
          await until(() => ofType(evil.frames, FrameType.CLOSE).length > 0 && b.link() !== bLink);
          expect(ofType(evil.frames, FrameType.CLOSE).map((f) => f.id)).toEqual([GUEST_ID + 1]);
        } else if (path === 'source gone') {
          await until(() => ofType(b.frames, FrameType.CLOSE).length > 0 && evil.link() !== evilLink);
          expect(ofType(b.frames, FrameType.CLOSE).map((f) => f.id)).toEqual([farId]);
        } else {
          await until(() => evil.link() !== evilLink);
          // The relay still holds the source's last bytes for the target: it keeps a slot, now the
          // target's, and the target holding as many as it may, no relay to it goes through.
          evil.write(relayOpens(1, 50));
          await until(() => evil.frames.some((f) => f.id === GUEST_ID + 50));
          expect(ofType(evil.frames, FrameType.REFUSE).map((f) => f.id)).toEqual([
            GUEST_ID + 2,
            GUEST_ID + 50,
          ]);
          expect([kept('evil').relaysJoined, kept('b').stranded]).toEqual([0, 1]);
          b.write(encodeFrame(FrameType.CREDIT, farId, u32(2 * RING)));
          await until(() => ofType(b.frames, FrameType.CLOSE).length > 0);
          expect(received(b, farId).equals(toB)).toBe(true);
          expect(ofType(b.frames, FrameType.CLOSE).map((f) => f.id)).toEqual([farId]);
        }
        expect([kept('evil'), kept('b')]).toEqual([EMPTY, EMPTY]);
        await relaysAgain(evil, b, 1);
      });
    },
    10_000,
  );

  /**
   * `count` relays from evil to b, with ids GUEST_ID + 1, 2, ..., each given twice b's window by
   * evil: b granted its window (RING) and never grants more, so the rest waits in the relay. Their
   * ids on b's channel.
   */
  async function stuckRelays(evil: RawGuest, b: RawGuest, count: number): Promise<number[]> {
    b.answer = 'accept';
    evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(count, 1));
    await until(() => ofType(evil.frames, FrameType.ACCEPT).length === count);
    const far = ofType(b.frames, FrameType.OPEN).map((f) => f.id);
    evil.write(...ids(count, 1).map((id) => encodeFrame(FrameType.DATA, id, Buffer.alloc(2 * RING, 1))));
    await until(() => far.every((id) => received(b, id).length === RING));
    return far;
  }

  it('frees the slots of a source that closes its relays to a target that never reads nor closes them', async () => {
    await withFlood({ maxRelaysInFlight: 4, maxRelayedStreams: 4 }, async ({ evil, b, c, kept }) => {
      await stuckRelays(evil, b, 4);
      evil.write(relayOpens(1, 5));
      expect(await answer(evil, GUEST_ID + 5)).toBe(FrameType.REFUSE);
      // evil closes them all, then opens a vchan to another guest: one write, its frames read in turn.
      c.answer = 'accept';
      evil.write(
        ...ids(4, 1).map((id) => encodeFrame(FrameType.CLOSE, id)),
        encodeFrame(FrameType.OPEN, GUEST_ID + 6, openPayload(700, RING, 'c')),
      );
      // (Unbounded: REFUSE, b keeping evil's slots for as long as it keeps its ends.)
      expect(await answer(evil, GUEST_ID + 6)).toBe(FrameType.ACCEPT);
      expect(kept('evil')).toEqual({ ...EMPTY, streams: 1, relaysJoined: 1 });
      // What is left of the four is b's: its ends still hold evil's last bytes for it.
      expect(kept('b')).toEqual({ ...EMPTY, streams: 4, stranded: 4 });
      expect(ofType(b.frames, FrameType.CLOSE)).toEqual([]);
    });
  }, 10_000);

  it.each([
    ['closes them', 'close'],
    ['reads what they hold', 'read'],
  ] as const)(
    'charges a target with the relays a source closed and left to it, until it %s',
    async (_, path) => {
      await withFlood({ maxRelaysInFlight: 4, maxRelayedStreams: 4 }, async ({ evil, b, kept }) => {
        const far = await stuckRelays(evil, b, 4);
        evil.answer = 'accept';
        // Read after the CLOSEs: refused, b holding as many relays left to it as a guest may have.
        evil.write(...ids(4, 1).map((id) => encodeFrame(FrameType.CLOSE, id)), relayOpens(1, 5));
        expect(await answer(evil, GUEST_ID + 5)).toBe(FrameType.REFUSE);
        // They count against b's own relays.
        b.write(encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(700, RING, 'evil')));
        expect(await answer(b, GUEST_ID + 1)).toBe(FrameType.REFUSE);
        expect([kept('evil'), kept('b')]).toEqual([EMPTY, { ...EMPTY, streams: 4, stranded: 4 }]);
        if (path === 'close') {
          b.write(...far.map((id) => encodeFrame(FrameType.CLOSE, id)));
          await until(() => kept('b').stranded === 0);
        } else {
          b.write(...far.map((id) => encodeFrame(FrameType.CREDIT, id, u32(RING))));
          // evil's last bytes reach b, then each relay closes.
          await until(() => ofType(b.frames, FrameType.CLOSE).length === 4);
          expect(ofType(b.frames, FrameType.CLOSE).map((f) => f.id)).toEqual(far);
          for (const id of far) expect(received(b, id)).toEqual(Buffer.alloc(2 * RING, 1));
        }
        expect([kept('evil'), kept('b')]).toEqual([EMPTY, EMPTY]);
        await relaysAgain(evil, b, 4);
        b.write(encodeFrame(FrameType.OPEN, GUEST_ID + 2, openPayload(700, RING, 'evil')));
        expect(await answer(b, GUEST_ID + 2)).toBe(FrameType.ACCEPT);
      });
    },
    10_000,
  );

  it('charges a source that neither reads nor closes with its relays, not the target that closed them', async () => {
    await withFlood({ maxRelaysInFlight: 4, maxRelayedStreams: 4 }, async ({ evil, b, kept }) => {
      b.answer = 'accept';
      evil.answer = 'accept';
      evil.write(encodeFrame(FrameType.HELLO, 0, hello(7)), relayOpens(4, 1));
      await until(() => ofType(evil.frames, FrameType.ACCEPT).length === 4);
      const far = ofType(b.frames, FrameType.OPEN).map((f) => f.id);
      // Twice evil's window (RING) on each, then closed; evil grants no more. Then b relays to evil.
      b.write(
        ...far.map((id) => encodeFrame(FrameType.DATA, id, Buffer.alloc(2 * RING, 2))),
        ...far.map((id) => encodeFrame(FrameType.CLOSE, id)),
        encodeFrame(FrameType.OPEN, GUEST_ID + 1, openPayload(700, RING, 'evil')),
      );
      expect(await answer(b, GUEST_ID + 1)).toBe(FrameType.ACCEPT);
      await until(() => ids(4, 1).every((id) => received(evil, id).length === RING));
      // evil's ends still hold b's last bytes: the four are evil's, its fifth refused.
      evil.write(relayOpens(1, 5));
      expect(await answer(evil, GUEST_ID + 5)).toBe(FrameType.REFUSE);
      expect(kept('evil')).toEqual({ ...EMPTY, streams: 5, relaysJoined: 4 });
      expect(kept('b')).toEqual({ ...EMPTY, streams: 1, relaysJoined: 1 });
    });
  }, 10_000);

  /** `count` relays open, and the first carries bytes to b. */
  async function relaysAgain(evil: RawGuest, b: RawGuest, count: number): Promise<void> {
    b.answer = 'accept';
    const from = b.frames.length;
    evil.write(relayOpens(count, 101));
    const answers = (): Frame[] =>
      evil.frames.filter((f) => f.id >= GUEST_ID + 101 && f.id < GUEST_ID + 101 + count);
    await until(() => answers().length === count);
    expect(answers().map((f) => f.type)).toEqual(Array(count).fill(FrameType.ACCEPT));
    const [open] = ofType(b.frames, FrameType.OPEN, from);
    evil.write(encodeFrame(FrameType.DATA, GUEST_ID + 101, Buffer.from('again')));
    await until(() => ofType(b.frames, FrameType.DATA, from).length > 0);
    expect(ofType(b.frames, FrameType.DATA, from).map((f) => [f.id, f.payload.toString()])).toEqual([
      [open?.id, 'again'],
    ]);
  }
});

describe('KVM vchan guest end against an admin domain that does not answer or does not read', () => {
  interface GuestBookkeeping {
    readonly opening: Map<number, unknown>;
    readonly streams: Map<number, unknown>;
  }

  it('gives up a connect at its deadline when its OPEN is never answered, and closes a late ACCEPT', async () => {
    const sentWire: Buffer[] = [];
    const mux = new ChannelMux('guest', ADMIN_DOMAIN);
    mux.attach((bytes) => sentWire.push(bytes));
    const sent = (): Frame[] => new FrameDecoder().push(Buffer.concat(sentWire));
    const guest = new KvmGuestTransport(mux, { connectTimeoutMs: 50, retryIntervalMs: 5 });
    await expect(guest.connect(ADMIN_DOMAIN, 512)).rejects.toThrow('timed out connecting to vchan 0:512');
    const opens = sent().filter((f) => f.type === FrameType.OPEN);
    expect(opens.map((f) => f.payload.toString('hex'))).toEqual([
      openPayload(512, 64 * 1024).toString('hex'),
    ]);
    const kept = mux as unknown as GuestBookkeeping;
    expect([kept.opening.size, kept.streams.size]).toEqual([0, 0]);
    const id = opens[0]?.id ?? 0;
    mux.receive(encodeFrame(FrameType.ACCEPT, id, u32(RING)));
    expect(sent().at(-1)).toMatchObject({ type: FrameType.CLOSE, id });
    expect(kept.streams.size).toBe(0);
  }, 5000);

  const LIMIT = 4096;
  /** Where the guest stops reading: past what held writers can queue (LIMIT and a frame), as much again. */
  const STOP_READING = 2 * LIMIT + HEADER_SIZE + MAX_DATA;

  /**
   * The guest's virtio-serial port, its host end played by the test: the guest reads what the
   * test sent, a piece at a time, and what the guest writes is taken only once the host reads.
   */
  function fakePort(observe: () => void) {
    const toGuest: Buffer[] = [];
    let wake = (): void => undefined;
    let closed = false;
    const fromGuest: Buffer[] = [];
    const blocked: (() => void)[] = [];
    let hostReads = false;
    const handle: PortHandle = {
      async read(buffer, offset, length) {
        observe();
        while (toGuest.length === 0 && !closed) await new Promise<void>((resolve) => (wake = resolve));
        if (closed) throw new Error('closed');
        const piece = toGuest.shift() as Buffer;
        const n = Math.min(length, piece.length);
        piece.copy(buffer, offset, 0, n);
        if (n < piece.length) toGuest.unshift(piece.subarray(n));
        return { bytesRead: n };
      },
      write(buffer, offset, length) {
        observe();
        const bytes = Buffer.from(buffer.subarray(offset, offset + length));
        return new Promise((resolve) => {
          const take = (): void => {
            fromGuest.push(bytes);
            resolve({ bytesWritten: length });
          };
          if (hostReads) take();
          else blocked.push(take);
        });
      },
      async close() {
        closed = true;
        wake();
      },
    };
    return {
      handle,
      send(...pieces: Buffer[]): void {
        toGuest.push(...pieces);
        wake();
      },
      /** Pieces sent that the guest has not read. */
      unread: (): number => toGuest.length,
      /** The host reads its end from now on. */
      startReading(): void {
        hostReads = true;
        blocked.splice(0).forEach((take) => take());
      },
      /** Every frame the host read. */
      frames: (): Frame[] => new FrameDecoder().push(Buffer.concat(fromGuest)),
    };
  }

  /** A guest's port with a queue bound of LIMIT; `peak()` is the most it had queued at any read or write. */
  async function guestEnd() {
    let peak = 0;
    const port = fakePort(() => (peak = Math.max(peak, queued())));
    const mux = new ChannelMux('guest', ADMIN_DOMAIN);
    const guest = new GuestPort('/dev/vport0p1', mux, {
      maxQueuedBytes: LIMIT,
      openDevice: async () => port.handle,
    });
    const queued = (): number => (guest as unknown as { queuedBytes: number }).queuedBytes;
    await guest.start();
    return { port, mux, guest, queued, peak: () => Math.max(peak, queued()) };
  }

  it('stops reading an admin domain that sends OPENs without reading the REFUSEs, and answers each once it reads', async () => {
    const end = await guestEnd();
    try {
      // 2000 pieces of 10 OPENs for a port nobody serves: 180 kB of REFUSEs.
      const perPiece = 10;
      const count = 2000 * perPiece;
      const pieces = Array.from({ length: count / perPiece }, (_, p) =>
        Buffer.concat(
          Array.from({ length: perPiece }, (_, i) =>
            encodeFrame(FrameType.OPEN, 1 + p * perPiece + i, openPayload(999, RING)),
          ),
        ),
      );
      // Past the point where reading stops come at most the answers to the rest of the piece read.
      const bound = STOP_READING + perPiece * HEADER_SIZE;
      end.port.send(encodeFrame(FrameType.HELLO, 0, hello(7)), ...pieces);
      // Until the guest stopped reading, or (unbounded) answered the whole flood into its queue.
      await until(() => end.port.unread() === 0 || end.queued() >= STOP_READING);
      await tick();
      expect(end.port.unread()).toBeGreaterThan(0);
      expect(end.queued()).toBeGreaterThanOrEqual(STOP_READING);
      expect(end.peak()).toBeLessThanOrEqual(bound);
      // Its own opens wait too: each would be more for a host that does not read.
      await expect(end.mux.open(600, RINGS)).rejects.toThrow(OpenRefused);
      end.port.startReading();
      await until(() => end.port.unread() === 0 && end.queued() === 0);
      const answers = end.port.frames().filter((f) => f.type !== FrameType.HELLO);
      expect(answers).toHaveLength(count);
      expect(answers.every((f, i) => f.type === FrameType.REFUSE && f.id === 1 + i)).toBe(true);
      expect(end.peak()).toBeLessThanOrEqual(bound);
    } finally {
      await end.guest.stop();
    }
  }, 10_000);

  it('holds a writer to an admin domain that grants credit without reading, and delivers every byte once it reads', async () => {
    const end = await guestEnd();
    try {
      const total = 1 << 20;
      const data = randomBytes(total);
      const bound = LIMIT + HEADER_SIZE + MAX_DATA;
      const served = end.mux.listen(512, RINGS);
      // All the credit there is, from a host that does not read.
      const credit = encodeFrame(FrameType.CREDIT, 1, u32(0xffffffff));
      end.port.send(
        encodeFrame(FrameType.HELLO, 0, hello(7)),
        Buffer.concat([encodeFrame(FrameType.OPEN, 1, openPayload(512, 0xffffffff)), credit, credit, credit]),
      );
      const vchan = await served.connected;
      let written = 0;
      const writing = (async () => {
        for (let at = 0; at < total; at += MAX_DATA) {
          const chunk = data.subarray(at, at + MAX_DATA);
          if (!vchan.write(chunk, () => (written += chunk.length))) await once(vchan, 'drain');
        }
      })();
      // Until the writer waits on a port that holds enough, or (unbounded) wrote it all.
      await until(() => written === total || (end.queued() >= LIMIT && vchan.writableNeedDrain));
      await tick();
      expect(written).toBeLessThan(total);
      expect(end.peak()).toBeLessThanOrEqual(bound);
      end.port.startReading();
      await writing;
      await until(() => end.queued() === 0);
      const payloads = end.port
        .frames()
        .filter((f) => f.type === FrameType.DATA && f.id === 1)
        .map((f) => f.payload);
      expect(Buffer.concat(payloads).equals(data)).toBe(true);
      expect(end.peak()).toBeLessThanOrEqual(bound);
      vchan.destroy();
    } finally {
      await end.guest.stop();
    }
  }, 10_000);

  it('still reads an admin domain while only its writers wait: one holding its own writers until the guest reads is not kept waiting', async () => {
    const end = await guestEnd();
    try {
      const served = end.mux.listen(512, RINGS);
      const credit = encodeFrame(FrameType.CREDIT, 1, u32(0xffffffff));
      end.port.send(
        encodeFrame(FrameType.HELLO, 0, hello(7)),
        Buffer.concat([encodeFrame(FrameType.OPEN, 1, openPayload(512, 0xffffffff)), credit]),
      );
      const vchan = await served.connected;
      const toHost = randomBytes(4 * MAX_DATA);
      let written = false;
      vchan.write(toHost, () => (written = true));
      await until(() => end.queued() >= LIMIT && vchan.writableNeedDrain);
      // The host's bytes (within the window the guest granted) and OPENs are still read meanwhile.
      const fromHost = randomBytes(RING);
      end.port.send(
        encodeFrame(FrameType.DATA, 1, fromHost),
        encodeFrame(FrameType.OPEN, 2, openPayload(999, RING)),
      );
      await tick();
      expect(end.port.unread()).toBe(0);
      expect(vchan.read(RING)).toEqual(fromHost);
      expect(written).toBe(false);
      end.port.startReading();
      await until(() => written && end.queued() === 0);
      const frames = end.port.frames();
      const data = frames.filter((f) => f.type === FrameType.DATA && f.id === 1).map((f) => f.payload);
      expect(Buffer.concat(data).equals(toHost)).toBe(true);
      // The REFUSE went as the host's OPEN was read; the CREDIT for what was read once the port drained.
      expect(
        frames
          .filter((f) => f.type === FrameType.REFUSE || f.type === FrameType.CREDIT)
          .map((f) => [f.type, f.id]),
      ).toEqual([
        [FrameType.REFUSE, 2],
        [FrameType.CREDIT, 1],
      ]);
      expect(frames.find((f) => f.type === FrameType.CREDIT)?.payload).toEqual(u32(RING));
      vchan.destroy();
    } finally {
      await end.guest.stop();
    }
  }, 10_000);
});
