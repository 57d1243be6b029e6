import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError } from '@odyssey/hal';
import {
  ChannelMux,
  FrameDecoder,
  FrameError,
  FrameType,
  KvmGuestTransport,
  KvmHostTransport,
  MuxVchan,
  encodeFrame,
} from '../src/kvm/index.js';

// A guest's virtio-serial port is played by a UNIX socket server standing in for QEMU's
// chardev: the host transport dials it, and a guest-side ChannelMux serves each connection.
interface FakeGuest {
  readonly mux: ChannelMux;
  readonly transport: KvmGuestTransport;
  link: Socket | undefined;
  readonly server: Server;
}

let dir: string;
let guests: FakeGuest[];
let vm: FakeGuest;
let guestMux: ChannelMux;
let guest: KvmGuestTransport;
let host: KvmHostTransport;
const open: MuxVchan[] = [];

async function fakeGuest(name: string): Promise<FakeGuest> {
  const mux = new ChannelMux('guest', '0');
  const g: FakeGuest = {
    mux,
    transport: new KvmGuestTransport(mux, { connectTimeoutMs: 2000, retryIntervalMs: 5 }),
    link: undefined,
    server: createServer((socket) => {
      // As the guest sees it: the old host end is gone before a new one connects.
      if (mux.linked) mux.detach();
      g.link = socket;
      mux.attach((bytes) => socket.write(bytes));
      socket.on('data', (chunk: Buffer) => mux.receive(chunk));
      socket.on('close', () => {
        if (g.link === socket) mux.detach();
      });
    }),
  };
  await new Promise<void>((resolve) => g.server.listen(join(dir, `${name}.sock`), resolve));
  guests.push(g);
  return g;
}

function hostTransport(relay = false): KvmHostTransport {
  return new KvmHostTransport({
    channelSocket: (d) => join(dir, `${d}.sock`),
    connectTimeoutMs: 2000,
    retryIntervalMs: 5,
    relay,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kvm-vchan-'));
  guests = [];
  vm = await fakeGuest('vm');
  guestMux = vm.mux;
  guest = vm.transport;
  host = hostTransport();
});

afterEach(async () => {
  for (const vchan of open.splice(0)) vchan.destroy();
  host.close();
  for (const g of guests) {
    g.link?.destroy();
    await new Promise((resolve) => g.server.close(resolve));
  }
  await rm(dir, { recursive: true, force: true });
});

async function pair(port = 512): Promise<{ server: MuxVchan; client: MuxVchan }> {
  const [server, client] = await Promise.all([guest.listen('0', port), host.connect('vm', port)]);
  open.push(server, client);
  return { server, client };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function writeWithBackpressure(stream: Writable, data: Buffer, chunkSize: number): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    if (!stream.write(data.subarray(offset, offset + chunkSize))) await once(stream, 'drain');
  }
  stream.end();
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('KVM vchan (mux over one channel), host and guest ends', () => {
  it('moves bytes with the host as server (qrexec data vchans go both ways)', async () => {
    const [server, client] = await Promise.all([host.listen('vm', 600), guest.connect('0', 600)]);
    open.push(server, client);
    client.write(Buffer.from('from guest'));
    const [data] = (await once(server, 'data')) as [Buffer];
    expect(data.toString()).toBe('from guest');
  });

  it('keeps the server waiting until a client connects, and delivers what was written meanwhile', async () => {
    const bound = guestMux.listen(513, { readRing: 65536, writeRing: 65536 });
    open.push(bound.vchan);
    expect(bound.vchan.state()).toBe('waiting');
    bound.vchan.write(Buffer.from('queued before the client came'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bound.vchan.state()).toBe('waiting');
    const client = await host.connect('vm', 513);
    open.push(client);
    expect(await bound.connected).toBe(bound.vchan);
    expect(bound.vchan.state()).toBe('connected');
    const [data] = (await once(client, 'data')) as [Buffer];
    expect(data.toString()).toBe('queued before the client came');
  });

  it('fails with a VchanError when no server appears in time, or the channel does not exist', async () => {
    const started = Date.now();
    await expect(host.connect('vm', 700, { timeoutMs: 150 })).rejects.toThrow(
      /timed out connecting to vchan vm:700/,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    await expect(host.connect('absent', 700, { timeoutMs: 100 })).rejects.toBeInstanceOf(VchanError);
  });

  it('serves a reader that waits for whole messages, even ones bigger than the ring', async () => {
    const { server, client } = await pair();
    // qrexec's framing: an 8-byte header, then a payload of up to 64 KiB, read with read(n)
    // and one lasting 'readable' listener, as core's MessageReader does.
    let wake: () => void = () => undefined;
    server.on('readable', () => wake());
    const readExact = async (n: number): Promise<Buffer> => {
      for (;;) {
        const chunk = server.read(n) as Buffer | null;
        if (chunk) return chunk;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    };
    const messages = [65536, 65536, 100_000, 3].map((n) => randomBytes(n));
    const writing = (async () => {
      for (const m of messages) {
        const header = Buffer.alloc(8);
        header.writeUInt32LE(m.length, 4);
        if (!client.write(Buffer.concat([header, m]))) await once(client, 'drain');
      }
    })();
    for (const m of messages) {
      const header = await readExact(8);
      expect(header.readUInt32LE(4)).toBe(m.length);
      expect(sha(await readExact(m.length))).toBe(sha(m));
    }
    await writing;
  });

  it('lets other vchans flow while one reader stalls', async () => {
    const stalled = await pair(520);
    const busy = await pair(521);
    stalled.server.pause();
    while (stalled.client.write(Buffer.alloc(8192))) {
      /* fill the stalled stream's window */
    }
    const data = randomBytes(4 * 1024 * 1024);
    const [received] = await Promise.all([
      readAll(busy.server),
      writeWithBackpressure(busy.client, data, 65536),
    ]);
    expect(sha(received)).toBe(sha(data));
    expect(stalled.client.bufferSpace()).toBe(0);
  });

  it('rejects the pending server when it is closed before a client came, and refuses clients after', async () => {
    const bound = guestMux.listen(517, { readRing: 4096, writeRing: 4096 });
    bound.vchan.destroy();
    await expect(bound.connected).rejects.toBeInstanceOf(VchanError);
    await expect(host.connect('vm', 517, { timeoutMs: 100 })).rejects.toBeInstanceOf(VchanError);
  });

  it('gives up waiting for a client when the listen is aborted, on either end', async () => {
    for (const transport of [guest, host]) {
      const abort = new AbortController();
      const listening =
        transport === guest
          ? guest.listen('0', 518, { signal: abort.signal })
          : host.listen('vm', 518, { signal: abort.signal });
      await new Promise((resolve) => setTimeout(resolve, 20));
      abort.abort();
      await expect(listening).rejects.toBeInstanceOf(VchanError);
    }
    await expect(host.connect('vm', 518, { timeoutMs: 100 })).rejects.toBeInstanceOf(VchanError);
  });

  it('disconnects every vchan when the channel goes away; waiting servers survive and the host redials', async () => {
    const { server, client } = await pair();
    const hostServer = host.listen('vm', 530);
    client.resume();
    server.resume();
    const ended = Promise.all([once(client, 'end'), once(server, 'end')]);
    vm.link?.destroy();
    await ended;
    expect(client.state()).toBe('disconnected');
    expect(server.state()).toBe('disconnected');
    // The host redials the channel for its waiting server; the guest connects through the new link.
    const late = await guest.connect('0', 530);
    open.push(late, await hostServer);
    expect(late.state()).toBe('connected');
  });

  it('drops the streams of a previous session when the peer says HELLO with a new nonce', async () => {
    const { client } = await pair();
    client.resume();
    const ended = once(client, 'end');
    // A rebooted guest: a new mux on the same link announces itself.
    const reborn = new ChannelMux('guest', '0');
    reborn.attach((bytes) => vm.link?.write(bytes));
    vm.link?.removeAllListeners('data');
    vm.link?.on('data', (chunk: Buffer) => reborn.receive(chunk));
    await ended;
    expect(client.state()).toBe('disconnected');
  });
});

describe('KVM vchan relay between guests through the host', () => {
  /** Runs `body` with a second guest `b` and a host that relays between it and `vm`, both channels kept up. */
  async function withRelay(body: (b: FakeGuest) => Promise<void>): Promise<void> {
    const relaying = hostTransport(true);
    const b = await fakeGuest('b');
    const keep = [relaying.keepChannel('vm'), relaying.keepChannel('b')];
    try {
      await body(b);
    } finally {
      keep.forEach((release) => release());
      relaying.close();
    }
  }

  it('relays a vchan from one guest to a server in another, both ways, and closes both ends', () =>
    withRelay(async (b) => {
      // Guest b serves port 600 for clients of domain "vm"; guest vm connects to "b" through the host.
      const [server, client] = await Promise.all([b.transport.listen('vm', 600), guest.connect('b', 600)]);
      open.push(server, client);
      expect(server.remoteDomain).toBe('vm');
      expect(client.remoteDomain).toBe('b');
      client.write(Buffer.from('from vm'));
      const [atB] = (await once(server, 'data')) as [Buffer];
      expect(atB.toString()).toBe('from vm');
      const data = randomBytes(4 * 1024 * 1024);
      const [received] = await Promise.all([readAll(client), writeWithBackpressure(server, data, 65536)]);
      expect(sha(received)).toBe(sha(data));
      expect(client.state()).toBe('disconnected');
    }));

  it("delivers a guest's last bytes to a slow reader in the other guest after the first is killed", () =>
    withRelay(async (b) => {
      const [server, client] = await Promise.all([b.transport.listen('vm', 603), guest.connect('b', 603)]);
      open.push(server, client);
      server.on('error', () => undefined);
      // vm reads nothing yet: past its window, b's bytes wait in the relay for vm's credit.
      client.pause();
      const data = randomBytes(96 * 1024);
      await new Promise<void>((resolve) => server.end(data, resolve));
      const link = b.link as Socket;
      if (link.writableLength > 0) await once(link, 'drain');
      // b is killed: its channel closes with all of b's bytes sent.
      link.destroy();
      const received = await readAll(client);
      expect(received.length).toBe(data.length);
      expect(sha(received)).toBe(sha(data));
    }));

  it('lets a server take only clients of the domain it listens for', () =>
    withRelay(async (b) => {
      const bound = b.mux.listen(601, { readRing: 4096, writeRing: 4096 }, 'other');
      open.push(bound.vchan);
      await expect(guest.connect('b', 601, { timeoutMs: 200 })).rejects.toBeInstanceOf(VchanError);
      expect(bound.vchan.state()).toBe('waiting');
    }));

  it('refuses guest-to-guest vchans when the host does not relay', async () => {
    const b = await fakeGuest('b');
    const keep = [host.keepChannel('vm'), host.keepChannel('b')];
    const bound = b.mux.listen(602, { readRing: 4096, writeRing: 4096 }, 'vm');
    open.push(bound.vchan);
    await expect(guest.connect('b', 602, { timeoutMs: 200 })).rejects.toBeInstanceOf(VchanError);
    keep.forEach((release) => release());
  });
});

describe('frames', () => {
  it('sends a corked header and payload in one DATA frame, as one write', () => {
    const sent: [FrameType, number, string][] = [];
    const vchan = new MuxVchan('vm', 512, { readRing: 65536, writeRing: 65536 });
    vchan.connect(
      {
        send: (type, id, payload) => sent.push([type, id, (payload ?? Buffer.alloc(0)).toString()]),
        forget: () => undefined,
        admit: () => true,
      },
      3,
      65536,
    );
    vchan.cork();
    vchan.write(Buffer.from('head'));
    vchan.write(Buffer.from('payload'));
    vchan.uncork();
    expect(sent).toEqual([[FrameType.DATA, 3, 'headpayload']]);
    vchan.destroy();
  });

  it('reassembles frames split at any byte and rejects garbage', () => {
    const frames = Buffer.concat([
      encodeFrame(FrameType.OPEN, 7, Buffer.from([0, 0, 2, 0, 0, 0, 16, 0])),
      encodeFrame(FrameType.DATA, 7, Buffer.from('payload')),
      encodeFrame(FrameType.CLOSE, 7),
    ]);
    const decoder = new FrameDecoder();
    const out = [];
    for (const byte of frames) out.push(...decoder.push(Buffer.from([byte])));
    expect(out.map((f) => [f.type, f.id, f.payload.toString('hex')])).toEqual([
      [FrameType.OPEN, 7, '0000020000001000'],
      [FrameType.DATA, 7, Buffer.from('payload').toString('hex')],
      [FrameType.CLOSE, 7, ''],
    ]);
    expect(() => new FrameDecoder().push(Buffer.from([99, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(FrameError);
    expect(() => new FrameDecoder().push(Buffer.from([5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]))).toThrow(
      FrameError,
    );
  });

  it('takes a 64 KiB DATA frame in 4 KiB reads (a guest port) and gives it out whole at its last byte', () => {
    const payload = randomBytes(65536);
    const wire = Buffer.concat([
      encodeFrame(FrameType.DATA, 9, payload),
      encodeFrame(FrameType.CREDIT, 9, Buffer.from([0, 1, 0, 0])),
    ]);
    const decoder = new FrameDecoder();
    const got: [number, number, number][] = [];
    for (let off = 0; off < wire.length; off += 4096) {
      const frames = decoder.push(wire.subarray(off, off + 4096));
      got.push(...frames.map((f): [number, number, number] => [off, f.type, f.payload.length]));
      if (frames[0]?.type === FrameType.DATA) expect(frames[0].payload.equals(payload)).toBe(true);
    }
    // The frame's last 9 bytes and the CREDIT frame came in the 17th read.
    expect(got).toEqual([
      [65536, FrameType.DATA, 65536],
      [65536, FrameType.CREDIT, 4],
    ]);
    // A corrupt header is refused as soon as it is there, whatever its payload would be.
    const bad = new FrameDecoder();
    bad.push(encodeFrame(FrameType.DATA, 9, randomBytes(100)).subarray(0, 50));
    expect(bad.push(Buffer.alloc(59))).toHaveLength(1);
    expect(() => bad.push(Buffer.from([0, 0, 0, 0, 9, 0, 1, 0]))).not.toThrow();
    expect(() => bad.push(Buffer.from([0]))).toThrow(FrameError);
  });
});
