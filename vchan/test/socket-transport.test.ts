import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError } from '@odyssey/hal';
import {
  SocketVchanTransport,
  createSocketTransport,
  vchanSocketPath,
  type SocketVchan,
} from '../src/index.js';
import { occupyThreadPool } from './thread-pool.js';

let dir: string;
let dom0: SocketVchanTransport;
let work: SocketVchanTransport;
const open: SocketVchan[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vchan-'));
  dom0 = new SocketVchanTransport({ localDomain: '0', dir, connectTimeoutMs: 2000 });
  work = createSocketTransport({ localDomain: '3', dir, connectTimeoutMs: 2000 });
});

afterEach(async () => {
  for (const vchan of open.splice(0)) vchan.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('SocketVchanTransport', () => {
  it('names the server socket after server, client and port', async () => {
    const bound = await work.bind('0', 600);
    open.push(bound.vchan);
    expect((await stat(vchanSocketPath(dir, '3', '0', 600))).isSocket()).toBe(true);
    expect(join(dir, 'vchan.3.0.600.sock')).toBe(vchanSocketPath(dir, '3', '0', 600));
  });

  it('keeps the server waiting until a client connects', async () => {
    const bound = await work.bind('0', 513);
    open.push(bound.vchan);
    expect(bound.vchan.state()).toBe('waiting');
    bound.vchan.write(Buffer.from('queued before the client came'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bound.vchan.state()).toBe('waiting');
    const client = await dom0.connect('3', 513);
    open.push(client);
    expect(await bound.connected).toBe(bound.vchan);
    expect(bound.vchan.state()).toBe('connected');
    const [data] = (await once(client, 'data')) as [Buffer];
    expect(data.toString()).toBe('queued before the client came');
  });

  it('sends corked writes in order, those queued before the client came included', async () => {
    const bound = await work.bind('0', 518);
    open.push(bound.vchan);
    const pieces = [0, 1, 2, 3, 4, 5].map((n) => Buffer.alloc(1000 + n * 70_000, n + 1));
    // Three writes wait for the client (the first as the pending write, two queued behind it).
    for (const piece of pieces.slice(0, 3)) bound.vchan.write(piece);
    const client = await dom0.connect('3', 518);
    open.push(client);
    await bound.connected;
    bound.vchan.cork();
    for (const piece of pieces.slice(3)) bound.vchan.write(piece);
    bound.vchan.uncork();
    bound.vchan.end();
    const chunks: Buffer[] = [];
    for await (const chunk of client) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('bounds corked batches by the ring when the peer does not read', async () => {
    const server = work.listen('0', 519);
    const client = await dom0.connect('3', 519);
    open.push(client, await server);
    (await server).pause();
    const header = Buffer.alloc(8, 7);
    const payload = Buffer.alloc(65528, 9);
    let batches = 0;
    // Batches go in while the ring has room; the reader never reads, so the room must run out.
    while (client.bufferSpace() > 0) {
      if (batches === 1000) throw new Error('no backpressure');
      client.cork();
      client.write(header);
      const ok = client.write(payload);
      client.uncork();
      batches++;
      if (!ok) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(client.bufferSpace()).toBe(0);
    const received = (async () => {
      let length = 0;
      for await (const chunk of await server) length += (chunk as Buffer).length;
      return length;
    })();
    client.end();
    expect(await received).toBe(batches * 65536);
  });

  it('rejects the pending server when it is closed before a client came', async () => {
    const bound = await work.bind('0', 516);
    bound.vchan.destroy();
    await expect(bound.connected).rejects.toBeInstanceOf(VchanError);
    await expect(stat(vchanSocketPath(dir, '3', '0', 516))).rejects.toThrow();
  });

  it("leaves the port's path to the next server once its client came", async () => {
    const bound = await work.bind('0', 519);
    open.push(bound.vchan);
    const path = vchanSocketPath(dir, '3', '0', 519);
    // Every libuv pool thread waits in a read, so any file operation the
    // transport starts at the connection runs only after the next server is up.
    const pool = occupyThreadPool(dir);
    open.push(await dom0.connect('3', 519));
    await bound.connected;
    const next = createServer();
    await new Promise<void>((resolve) => next.listen(path, resolve));
    try {
      await pool.release();
      expect((await stat(path)).isSocket()).toBe(true);
    } finally {
      next.close();
    }
  });

  it('gives up waiting for a client when the listen is aborted', async () => {
    const abort = new AbortController();
    const listening = work.listen('0', 517, { signal: abort.signal });
    await new Promise((resolve) => setTimeout(resolve, 20));
    abort.abort();
    await expect(listening).rejects.toBeInstanceOf(VchanError);
    await expect(stat(vchanSocketPath(dir, '3', '0', 517))).rejects.toThrow();
  });
});
