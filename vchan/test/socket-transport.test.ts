import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError } from '@odyssey/hal';
import {
  SocketVchanTransport,
  createSocketTransport,
  vchanSocketPath,
  type SocketVchan,
} from '../src/index.js';

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

async function pair(port = 512): Promise<{ server: SocketVchan; client: SocketVchan }> {
  const [server, client] = await Promise.all([work.listen('0', port), dom0.connect('3', port)]);
  open.push(server, client);
  return { server, client };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function writeWithBackpressure(stream: Writable, data: Buffer, chunkSize: number): Promise<void> {
  return (async () => {
    for (let offset = 0; offset < data.length; offset += chunkSize) {
      if (!stream.write(data.subarray(offset, offset + chunkSize))) await once(stream, 'drain');
    }
    stream.end();
  })();
}

describe('SocketVchanTransport', () => {
  it('names the server socket after server, client and port', async () => {
    const bound = await work.bind('0', 600);
    open.push(bound.vchan);
    expect((await stat(vchanSocketPath(dir, '3', '0', 600))).isSocket()).toBe(true);
    expect(join(dir, 'vchan.3.0.600.sock')).toBe(vchanSocketPath(dir, '3', '0', 600));
  });

  it('moves bytes both ways', async () => {
    const { server, client } = await pair();
    expect(server.state()).toBe('connected');
    expect(client.state()).toBe('connected');
    expect(client.remoteDomain).toBe('3');
    expect(server.port).toBe(512);
    client.write(Buffer.from('hello from dom0'));
    const [fromClient] = (await once(server, 'data')) as [Buffer];
    expect(fromClient.toString()).toBe('hello from dom0');
    server.write(Buffer.from('hello from work'));
    const [fromServer] = (await once(client, 'data')) as [Buffer];
    expect(fromServer.toString()).toBe('hello from work');
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

  it('lets a client connect before the server exists', async () => {
    const connecting = dom0.connect('3', 514);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const server = await work.listen('0', 514);
    const client = await connecting;
    open.push(server, client);
    expect(client.state()).toBe('connected');
  });

  it('accepts a single client per server', async () => {
    await pair(515);
    const second = new SocketVchanTransport({ localDomain: '0', dir, connectTimeoutMs: 100 });
    await expect(second.connect('3', 515)).rejects.toBeInstanceOf(VchanError);
  });

  it('fails with a VchanError when no server appears in time', async () => {
    const impatient = new SocketVchanTransport({ localDomain: '0', dir, connectTimeoutMs: 150 });
    const started = Date.now();
    await expect(impatient.connect('7', 700)).rejects.toThrow(/timed out connecting to vchan 7:700/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('transfers 64 MiB intact', async () => {
    const { server, client } = await pair();
    const data = randomBytes(64 * 1024 * 1024);
    const [received] = await Promise.all([readAll(server), writeWithBackpressure(client, data, 65536)]);
    expect(received.length).toBe(data.length);
    expect(createHash('sha256').update(received).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
  });

  it('bounds buffering by the ring size and reports it through bufferSpace and dataReady', async () => {
    const { server, client } = await pair();
    expect(client.bufferSpace()).toBe(64 * 1024);
    server.pause();
    let accepted = 0;
    const chunk = Buffer.alloc(4096, 1);
    // Fill until write() says stop; the kernel and the peer's read ring absorb some first.
    while (client.write(chunk)) {
      accepted += chunk.length;
      if (accepted > 64 * 1024 * 1024) throw new Error('no backpressure');
    }
    // What the kernel passes on arrives when the peer is scheduled, which a loaded machine only delays.
    while (server.dataReady() === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(client.bufferSpace()).toBe(0);
    expect(server.dataReady()).toBeLessThanOrEqual(64 * 1024 + 65536);
    const drained = once(client, 'drain');
    server.resume();
    await drained;
    expect(client.bufferSpace()).toBeGreaterThan(0);
  });

  it('delivers data sent before close, then EOF and the disconnected state', async () => {
    const { server, client } = await pair();
    server.write(Buffer.from('last words'));
    server.end();
    const received = await readAll(client);
    expect(received.toString()).toBe('last words');
    expect(client.state()).toBe('disconnected');
    server.resume();
    await once(server, 'close');
    expect(server.state()).toBe('disconnected');
    expect(client.bufferSpace()).toBe(0);
  });

  it('reports disconnected when the peer is destroyed', async () => {
    const { server, client } = await pair();
    client.resume();
    const ended = once(client, 'end');
    server.destroy();
    await ended;
    expect(client.state()).toBe('disconnected');
  });

  it('rejects the pending server when it is closed before a client came', async () => {
    const bound = await work.bind('0', 516);
    bound.vchan.destroy();
    await expect(bound.connected).rejects.toBeInstanceOf(VchanError);
    await expect(stat(vchanSocketPath(dir, '3', '0', 516))).rejects.toThrow();
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
