import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XenVchanTransport, measureRoundTrip, measureThroughput, type XenVchan } from '../src/index.js';
import { FakeXen, type FakeBinding, type FakeEnd } from './xen-fake.js';

let xen: FakeXen;
let dom0: XenVchanTransport;
let work: XenVchanTransport;
let dom0Binding: FakeBinding;
let workBinding: FakeBinding;
const open: XenVchan[] = [];
const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

function transport(
  domid: number,
  extra: { connectTimeoutMs?: number; restoreCheckMs?: number } = {},
): [XenVchanTransport, FakeBinding] {
  const { binding, xenstore } = xen.domain(domid);
  const options = { binding, xenstore, evtchnDevice: '/dev/null', retryIntervalMs: 5, ...extra };
  return [new XenVchanTransport(options), binding];
}

beforeEach(() => {
  xen = new FakeXen();
  [dom0, dom0Binding] = transport(0, { connectTimeoutMs: 1000 });
  [work, workBinding] = transport(3, { connectTimeoutMs: 1000 });
});

afterEach(async () => {
  for (const vchan of open.splice(0)) vchan.destroy();
  await new Promise((resolve) => setTimeout(resolve, 10));
  expect(xen.violations).toEqual([]);
});

/** A connected pair with qrexec's 64 KiB rings (the bulk rings have tests of their own). */
async function pair(port = 512): Promise<{ server: XenVchan; client: XenVchan }> {
  const rings = { readMin: 64 * 1024, writeMin: 64 * 1024 };
  const [server, client] = await Promise.all([work.listen('0', port, rings), dom0.connect('3', port)]);
  open.push(server, client);
  return { server, client };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function writeAll(stream: Writable, data: Buffer, chunkSize: number): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    if (!stream.write(data.subarray(offset, offset + chunkSize))) await once(stream, 'drain');
  }
  stream.end();
}

function endOf(vchan: XenVchan): FakeEnd {
  const fd = xen.ends.find((end) => end.channel.xsPath.endsWith(`/${vchan.port}`) && !end.freed);
  if (!fd) throw new Error('no end');
  return fd;
}

describe('XenVchanTransport on a fake libxenvchan', () => {
  it("puts the server under the peer's data/vchan path and resolves listen when the client connects", async () => {
    const bound = await work.bind('0', 512, { readMin: 4096, writeMin: 8192 });
    open.push(bound.vchan);
    expect(xen.store.get('/local/domain/3/data/vchan/0/512/event-channel')).toBeDefined();
    expect(bound.vchan.state()).toBe('waiting');
    let connected = false;
    void bound.connected.then(() => (connected = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(connected).toBe(false);
    const client = await dom0.connect('3', 512);
    open.push(client);
    expect(await bound.connected).toBe(bound.vchan);
    expect(bound.vchan.state()).toBe('connected');
    expect(client.state()).toBe('connected');
    // The minima it named, not the transport's 64 KiB.
    expect(endOf(bound.vchan).channel.serverRing).toBe(4096);
    expect(endOf(bound.vchan).channel.clientRing).toBe(8192);
  });

  it('offers a server to one client only', async () => {
    await pair(513);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(xen.store.get('/local/domain/3/data/vchan/0/513/event-channel')).toBeUndefined();
    const [second] = transport(0, { connectTimeoutMs: 100 });
    await expect(second.connect('3', 513)).rejects.toThrow(/timed out connecting to vchan 3:513/);
  });

  it('transfers 8 MiB intact through 64 KiB rings, one wait at a time', async () => {
    const { server, client } = await pair();
    const data = randomBytes(8 * 1024 * 1024);
    const [received] = await Promise.all([readAll(server), writeAll(client, data, 100_000)]);
    expect(received.length).toBe(data.length);
    expect(sha(received)).toBe(sha(data));
    // The rings fill up many times over, so progress came from notifications.
    expect(xen.ends.reduce((waits, end) => waits + end.waits, 0)).toBeGreaterThan(100);
  });

  it('writes a corked batch whole and in order, also when it is larger than the ring', async () => {
    const { server, client } = await pair();
    const pieces = [Buffer.alloc(8, 1), randomBytes(65528), Buffer.from('next'), randomBytes(100_000)];
    const received = readAll(server);
    client.cork();
    for (const piece of pieces) client.write(piece);
    client.uncork();
    client.end();
    expect((await received).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('lets the reader drain what the peer wrote before it closed, then ends', async () => {
    const { server, client } = await pair();
    client.write(Buffer.from('last words'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.destroy();
    const received = await readAll(server);
    expect(received.toString()).toBe('last words');
    expect(server.state()).toBe('disconnected');
    expect(xen.ends.every((end) => end.freed && end.watchClosed)).toBe(true);
  });

  it('fails writes after the peer closed', async () => {
    const { server, client } = await pair();
    server.on('error', () => undefined);
    client.destroy();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.state()).toBe('disconnected');
    const failed = new Promise<Error | null | undefined>((resolve) =>
      server.write(Buffer.from('x'), resolve),
    );
    expect(String(await failed)).toMatch(/vchan 0:512: peer closed/);
  });

  // The Xen hal check close-while-peer-writes: dom0 drops a data vchan while the guest's agent
  // waits for ring space. Failing that write destroys the stream at once, and libxenvchan_close ran
  // there, before the pass that reported it read data_ready from the freed ctrl (the guest's agent
  // died of it, so the next exec never came back).
  it('frees nothing before the pass that saw the peer close with a write waiting is done', async () => {
    const { server, client } = await pair();
    server.on('error', () => undefined);
    const closed = new Promise((resolve) => server.once('close', resolve));
    const failed = new Promise<Error | null | undefined>((resolve) =>
      server.write(randomBytes(256 * 1024), resolve),
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(server.writableLength).toBeGreaterThan(0);
    client.destroy();
    expect(String(await failed)).toMatch(/vchan 0:512: peer closed/);
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(xen.violations).toEqual([]);
    expect(xen.ends.every((end) => end.freed && end.watchClosed)).toBe(true);
  });

  it('defers libxenvchan_close until the wait in flight returns, and wakes it', async () => {
    const { server, client } = await pair();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const end = xen.ends.find((candidate) => candidate.side === 'client') as FakeEnd;
    expect(end.waiting).toBe(true);
    client.destroy();
    // Freeing now would be the use-after-free: the fake records it as a violation.
    expect(end.freed).toBe(false);
    await once(client, 'close');
    await new Promise((resolve) => setImmediate(resolve));
    expect(end.freed).toBe(true);
    expect(end.watchClosed).toBe(true);
    // The server hears of the close.
    await readAll(server);
    expect(server.state()).toBe('disconnected');
  });

  it('ends the channel when the writable side ends (vchan has no half-close)', async () => {
    const { server, client } = await pair();
    client.end(Buffer.from('bye'));
    expect((await readAll(server)).toString()).toBe('bye');
  });

  it('rejects listen and frees the server when destroyed before a client connected', async () => {
    const bound = await work.bind('0', 520);
    bound.vchan.destroy();
    await expect(bound.connected).rejects.toThrow(/vchan server 0:520 closed before a client connected/);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(xen.ends.map((end) => end.freed)).toEqual([true]);
  });

  it('keeps a new server on a port whose destroyed server closes only after it listened', async () => {
    const { server } = await pair(560);
    // Destroyed while its wait is in flight, the old server closes later; its close removes the
    // port's xenstore path, which must not be the new server's.
    server.destroy();
    const again = work.listen('0', 560);
    const client = await dom0.connect('3', 560);
    open.push(await again, client);
    client.end(Buffer.from('second'));
    expect((await readAll(await again)).toString()).toBe('second');
  });

  it('closes the vchans of a domU restored under a new domid, and opens new ones under that domid', async () => {
    const [guest] = transport(3, { connectTimeoutMs: 1000, restoreCheckMs: 5 });
    const [server, client] = await Promise.all([guest.listen('0', 530), dom0.connect('3', 530)]);
    open.push(server, client);
    const waiting = await guest.bind('0', 531);
    // What libxl writes for the restored domain, read by the guest under its own home.
    xen.store.set('/local/domain/3/domid', '9');
    await once(server, 'close');
    await expect(waiting.connected).rejects.toThrow(/vchan server 0:531 closed before a client connected/);
    // Abandoned, not closed: closing an event channel that outlived a restore crashes Linux's evtchn.
    const guestEnds = xen.ends.filter(
      (end) => end.side === 'server' && /\/(530|531)$/.test(end.channel.xsPath),
    );
    expect(guestEnds.map((end) => end.freed)).toEqual([false, false]);
    // dom0 now names the guest 9, and the guest connects as 9.
    const [back, out] = await Promise.all([dom0.listen('9', 532), guest.connect('0', 532)]);
    open.push(back, out);
    out.end(Buffer.from('after restore'));
    expect((await readAll(back)).toString()).toBe('after restore');
  });

  it('times out connecting when no server appears, without opening anything', async () => {
    const [impatient, binding] = transport(0, { connectTimeoutMs: 100 });
    await expect(impatient.connect('7', 700)).rejects.toThrow(
      /timed out connecting to vchan 7:700 \(no \/local\/domain\/7\/data\/vchan\/0\/700\)/,
    );
    expect(binding.initCalls).toBe(0);
  });

  it('reports a NULL init with its errno', async () => {
    dom0Binding.failWithErrno = 12;
    await expect(dom0.listen('3', 540)).rejects.toThrow(
      'libxenvchan_server_init(3, "data/vchan/3/540") returned NULL: errno 12 (ENOMEM)',
    );
    workBinding.failWithErrno = 13;
    await work.bind('0', 541).catch(() => undefined);
    expect(xen.ends).toEqual([]);
  });

  it('inits again when a signal interrupted the init (EINTR), up to five times', async () => {
    dom0Binding.failWithErrno = 4;
    dom0Binding.failTimes = 2;
    workBinding.failWithErrno = 4;
    workBinding.failTimes = 4;
    const { server, client } = await pair(560);
    expect([dom0Binding.initCalls, workBinding.initCalls]).toEqual([3, 5]);
    client.write('after EINTR');
    const [data] = (await once(server, 'data')) as [Buffer];
    expect(data.toString()).toBe('after EINTR');

    dom0Binding.failWithErrno = 4;
    dom0Binding.failTimes = undefined;
    await expect(dom0.listen('3', 561)).rejects.toThrow(/returned NULL: errno 4 \(EINTR\)/);
    // Five tries for the bulk rings, five for qrexec's.
    expect(dom0Binding.initCalls).toBe(3 + 5 + 5);
  });

  it('names peers by domid unless given a resolver', async () => {
    await expect(dom0.listen('work', 550)).rejects.toThrow(/named by domid; got "work"/);
    const { binding, xenstore } = xen.domain(0);
    const named = new XenVchanTransport({
      binding,
      xenstore,
      evtchnDevice: '/dev/null',
      resolveDomid: async (name) => (name === 'work' ? 3 : Promise.reject(new Error(`no ${name}`))),
    });
    const client = named.connect('work', 551);
    const server = await work.listen('0', 551);
    open.push(server, await client);
    expect((await client).remoteDomain).toBe('work');
  });

  it('bounds buffering by ring and stream and reports it through bufferSpace and dataReady', async () => {
    const { server, client } = await pair();
    expect(client.bufferSpace()).toBe(64 * 1024);
    server.pause();
    const accepted = client.write(Buffer.alloc(200 * 1024, 1));
    expect(accepted).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The server's stream holds its high-water mark, the ring the rest it can.
    expect(server.dataReady()).toBe(128 * 1024);
    expect(client.bufferSpace()).toBe(0);
    const drained = once(client, 'drain');
    const received = readAll(server);
    await drained;
    client.end();
    expect((await received).length).toBe(200 * 1024);
  });

  it('measures throughput over a pair', async () => {
    const { server, client } = await pair();
    server.pipe(server);
    const result = await measureThroughput(client, client, 1 << 20);
    expect(result.bytes).toBe(1 << 20);
    expect(result.mbPerSecond).toBeGreaterThan(0);
  });

  it('wakes each end once per ring of data or echo it waits for, not after every read of its peer', async () => {
    const { server, client } = await pair();
    server.pipe(server);
    const serverEnd = endOf(server);
    const received = () => [serverEnd.peer?.received ?? 0, serverEnd.received];
    await measureThroughput(client, client, 4 << 20);
    const [clientStreamed = 0, serverStreamed = 0] = received();
    await measureRoundTrip(client, 200);
    const [clientTotal = 0, serverTotal = 0] = received();
    // 4 MiB through 64 KiB rings: the echo wakes for each ring the client filled; the client for
    // each ring echoed back and for room in a ring it filled. Asking for a notification after
    // every read (buffer_space before each write) woke the echo twice as often.
    expect(serverStreamed).toBeLessThanOrEqual(64 + 2);
    expect(clientStreamed).toBeLessThanOrEqual(2 * 64 + 2);
    // A round trip: one wake for the request at the echo, one for the answer at the client.
    expect(serverTotal - serverStreamed).toBeLessThanOrEqual(200 + 1);
    expect(clientTotal - clientStreamed).toBeLessThanOrEqual(200 + 1);
  });
});

describe('ring sizes and the pages they share', () => {
  async function connected(port: number, rings?: { readMin: number; writeMin: number }): Promise<XenVchan[]> {
    const ends = await Promise.all([work.listen('0', port, rings), dom0.connect('3', port)]);
    open.push(...ends);
    return ends;
  }

  it('gives the minima a caller names, rounded as libxenvchan rounds them, and the client learns them', async () => {
    const [server, client] = await connected(700, { readMin: 4096, writeMin: 2000 });
    // A 4 KiB and a 2 KiB minimum: one page of ring and the shared page (which holds the 2 KiB one).
    expect(workBinding.grantsShared).toBe(2);
    expect(client?.bufferSpace()).toBe(4096);
    expect(client?.readableHighWaterMark).toBe(2048);
    expect(server?.writableHighWaterMark).toBe(2048);
    expect(server?.readableHighWaterMark).toBe(4096);
  });

  it("gives a data channel 1 MiB rings, to one channel at a time, and qrexec's 64 KiB to the others", async () => {
    const [bulkServer, bulkClient] = await connected(701);
    const plain = await connected(702);
    expect([bulkServer?.bufferSpace(), bulkClient?.bufferSpace()]).toEqual([1 << 20, 1 << 20]);
    expect(plain.map((end) => end.bufferSpace())).toEqual([64 * 1024, 64 * 1024]);
    expect(workBinding.grantsShared).toBe(513 + 33);
    const data = randomBytes(3 << 20);
    const received = readAll(bulkServer as XenVchan);
    await writeAll(bulkClient as XenVchan, data, 200 * 1024);
    expect(sha(await received)).toBe(sha(data));
    await (bulkServer as XenVchan).released;
    expect(workBinding.grantsShared).toBe(33);
    const [, next] = await connected(703);
    expect(next?.bufferSpace()).toBe(1 << 20);
  });

  it('gives the bulk rings once when two servers are set up at the same time', async () => {
    const [first, second] = await Promise.all([work.bind('0', 704), work.bind('0', 705)]);
    open.push(first.vchan, second.vchan);
    expect(workBinding.grantsShared).toBe(513 + 33);
    const rings = [first.vchan.writableHighWaterMark, second.vchan.writableHighWaterMark];
    expect(rings.sort((a, b) => a - b)).toEqual([64 * 1024, 1 << 20]);
  });

  it("falls back to qrexec's rings when gntalloc refuses the bulk pages, and reports ENOSPC when it refuses those too", async () => {
    workBinding.grantLimit = 512;
    const [server, client] = await connected(706);
    expect(client?.bufferSpace()).toBe(64 * 1024);
    expect(workBinding.grantsShared).toBe(33);
    const data = randomBytes(300 * 1024);
    const received = readAll(server as XenVchan);
    await writeAll(client as XenVchan, data, 50 * 1024);
    expect(sha(await received)).toBe(sha(data));
    workBinding.grantLimit = workBinding.grantsShared + 32;
    await expect(work.listen('0', 707)).rejects.toThrow(/errno 28 \(ENOSPC\)/);
  });
});
