import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Vchan } from '@odyssey/hal';
import { SocketVchanTransport, vchanSocketPath } from '@odyssey/vchan';
import { RuntimeFiles } from '../src/runtime-files.js';
import { VchanRelay } from '../src/vchan-relay.js';
import { occupyThreadPool } from '../../../vchan/test/thread-pool.js';

/** Two domains' vchan dirs on real sockets, as dom0 sees them; alpha has id 7, beta id 9. */
const IDS: Record<string, number> = { alpha: 7, beta: 9 };

function pattern(length: number, step: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * step) & 0xff;
  return bytes;
}

function firstBytes(vchan: Vchan, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got < n) return;
      vchan.off('data', onData);
      vchan.pause();
      resolve(Buffer.concat(chunks));
    };
    vchan.on('data', onData);
    vchan.once('close', () => reject(new Error(`closed after ${got} bytes`)));
  });
}

describe('lxc vchan relay (real sockets in per-domain dirs)', () => {
  let files: RuntimeFiles;
  let relay: VchanRelay;
  const logged: string[] = [];

  const inDomain = (name: string): SocketVchanTransport =>
    new SocketVchanTransport({ localDomain: name, dir: files.vchanDir(name), connectTimeoutMs: 20_000 });

  beforeEach(async () => {
    files = new RuntimeFiles(await mkdtemp(join(tmpdir(), 'lxc-relay-')));
    for (const name of Object.keys(IDS)) await mkdir(files.vchanDir(name), { recursive: true });
    relay = new VchanRelay({
      files,
      idOf: (name) => Promise.resolve(IDS[name]),
      nameOf: (id) => Promise.resolve(Object.keys(IDS).find((n) => IDS[n] === id)),
      log: (_level, message) => logged.push(message),
    });
    await relay.watchExisting();
  });

  afterEach(async () => {
    relay.close();
    await rm(files.runtimeDir, { recursive: true, force: true });
  });

  it('joins a server named by peer id to its peer: megabytes both ways at once, then EOF', async () => {
    const serving = inDomain('alpha').listen(String(IDS['beta']), 600);
    const client = await inDomain('beta').connect(String(IDS['alpha']), 600);
    const server = await serving;
    const up = pattern(3 * 1024 * 1024 + 17, 31);
    const down = pattern(2 * 1024 * 1024 + 5, 7);
    const atServer = firstBytes(server, up.length);
    const atClient = firstBytes(client, down.length);
    client.write(up);
    server.write(down);
    expect((await atServer).equals(up)).toBe(true);
    expect((await atClient).equals(down)).toBe(true);
    // The client closes: the server reads the end of the stream.
    const ended = once(server, 'end');
    server.resume();
    client.end();
    await ended;
    // Once joined the stand-in's name is gone from the peer's dir, as the server's is from its own.
    expect(existsSync(vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 600))).toBe(false);
  });

  it('joins a server named by peer name, with the server named by name in the peer dir', async () => {
    const serving = inDomain('beta').listen('alpha', 601);
    const client = await inDomain('alpha').connect('beta', 601);
    const server = await serving;
    client.write('ping');
    expect((await firstBytes(server, 4)).toString()).toBe('ping');
    server.write('pong');
    expect((await firstBytes(client, 4)).toString()).toBe('pong');
    // Closing one end closes the other.
    const closed = once(client, 'close');
    client.resume();
    server.destroy();
    await closed;
    expect(client.state()).toBe('disconnected');
  });

  it('removes the stand-in when the server goes before a client came', async () => {
    const bound = await inDomain('alpha').bind('9', 602);
    const standIn = vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 602);
    await waitFor(() => existsSync(standIn));
    bound.vchan.destroy();
    await bound.connected.catch(() => undefined);
    await waitFor(() => !existsSync(standIn));
  });

  it("leaves the stand-in's path to the next stand-in once its client came", async () => {
    const bound = await inDomain('alpha').bind('9', 607);
    const standIn = vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 607);
    await waitFor(() => existsSync(standIn));
    // Every libuv pool thread waits in a read, so any file operation the
    // relay starts at the join runs only after the next stand-in is up.
    const pool = occupyThreadPool(files.runtimeDir);
    const client = await inDomain('beta').connect('7', 607);
    await bound.connected;
    client.destroy();
    const next = createServer();
    await new Promise<void>((resolve) => next.listen(standIn, resolve));
    try {
      await pool.release();
      expect((await stat(standIn)).isSocket()).toBe(true);
    } finally {
      next.close();
      bound.vchan.destroy();
    }
  });

  it("delivers a client's last words though the relay's write found the client gone first", async () => {
    const serving = inDomain('alpha').listen('9', 608);
    const client = await inDomain('beta').connect('7', 608);
    const server = await serving;
    const joined = once(client, 'data');
    server.write(Buffer.from('hello'));
    await joined;
    let received = '';
    server.on('data', (chunk: Buffer) => (received += chunk.toString()));
    server.on('error', () => undefined);
    client.on('error', () => undefined);
    const ended = once(server, 'end');
    // The server's bytes reach the relay first, so the relay writes them to the client, dead by
    // then (its socket closed, as a killed process's is), before it reads the client's last words.
    server.write(Buffer.from('stdin eof'));
    client.write(Buffer.from('exit code 0'));
    client.destroy(new Error('killed'));
    await ended;
    expect(received).toBe('exit code 0');
  });

  it("relays no socket named as another domain's, for dom0, or for an unknown peer", async () => {
    const betaDir = files.vchanDir('beta');
    // In alpha's dir alpha can name a socket as beta's server: it is not relayed to anyone.
    const spoof = new SocketVchanTransport({ localDomain: 'beta', dir: files.vchanDir('alpha') });
    const spoofed = await spoof.bind('alpha', 603);
    const forDom0 = await inDomain('alpha').bind('0', 604);
    const unknown = await inDomain('alpha').bind('42', 605);
    // A socket that is relayed, bound last: once its stand-in is there, the others were seen.
    const real = await inDomain('alpha').bind('9', 606);
    await waitFor(() => existsSync(vchanSocketPath(betaDir, '7', 'beta', 606)));
    expect(await readdir(betaDir)).toEqual(['vchan.7.beta.606.sock']);
    for (const b of [spoofed, forDom0, unknown, real]) b.vchan.destroy();
  });
});

/** Polls a condition the relay reaches through inotify events; the test's own timeout bounds it. */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
