import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VchanError, type Vchan } from '@odyssey/hal';

import { SocketVchanTransport } from '../src/index.js';
import { ProxyVchanTransport, serveVchanProxy, type VchanProxy } from '../src/proxy/index.js';

let dir: string;
let dom0: SocketVchanTransport;
let proxy: VchanProxy;
let viaProxy: ProxyVchanTransport;
const open: Vchan[] = [];
/** The vchans the proxy opened for the domain's programs. */
let owned: Vchan[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vchan-proxy-'));
  dom0 = new SocketVchanTransport({ localDomain: '0', dir, connectTimeoutMs: 2000 });
  // The owner of domain 7's transport serves it to the domain's other programs.
  const transport = new SocketVchanTransport({ localDomain: '7', dir, connectTimeoutMs: 300 });
  owned = [];
  const keep = (vchan: Vchan): Vchan => (owned.push(vchan), vchan);
  proxy = await serveVchanProxy(
    {
      name: transport.name,
      listen: (...args) => transport.listen(...args).then(keep),
      connect: (...args) => transport.connect(...args).then(keep),
    },
    join(dir, 'proxy.sock'),
  );
  viaProxy = new ProxyVchanTransport({ path: proxy.path });
});

afterEach(async () => {
  for (const vchan of open.splice(0)) vchan.destroy();
  await proxy.close();
  await rm(dir, { recursive: true, force: true });
});

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readBytes(stream: Readable, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < length) {
    const chunk = stream.read() as Buffer | null;
    if (chunk) {
      chunks.push(chunk);
      total += chunk.length;
    } else await once(stream, 'readable');
  }
  return Buffer.concat(chunks);
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('vchan proxy', () => {
  it('listens for a program of the domain and carries bytes both ways, in order', async () => {
    const [server, client] = await Promise.all([viaProxy.listen('0', 600), dom0.connect('7', 600)]);
    open.push(server, client);
    expect(server.state()).toBe('connected');
    expect([server.remoteDomain, server.port]).toEqual(['0', 600]);

    const up = randomBytes(3 * 1024 * 1024 + 17);
    const down = randomBytes(1024 * 1024 + 5);
    // Both directions at once; a vchan has no half-close, so each side stops at the expected length.
    const received = Promise.all([readBytes(client, up.length), readBytes(server, down.length)]);
    server.write(up);
    client.write(down);
    const [atDom0, atDomain] = await received;
    expect(sha(atDom0)).toBe(sha(up));
    expect(sha(atDomain)).toBe(sha(down));
  });

  it('connects for a program of the domain to a server elsewhere', async () => {
    const listening = dom0.listen('7', 601);
    const client = await viaProxy.connect('0', 601);
    const server = await listening;
    open.push(server, client);
    client.write('hello from the guest');
    const [chunk] = (await once(server, 'data')) as [Buffer];
    expect(chunk.toString()).toBe('hello from the guest');
  });

  it("ends the program's vchan when the peer closes", async () => {
    const [server, client] = await Promise.all([viaProxy.listen('0', 602), dom0.connect('7', 602)]);
    open.push(server);
    const ended = readAll(server);
    client.end('last words');
    expect((await ended).toString()).toBe('last words');
    expect(server.state()).toBe('disconnected');
  });

  it("delivers a dead peer's last bytes to a program that wrote after the death and reads late", async () => {
    const [program, peer] = await Promise.all([viaProxy.listen('0', 605), dom0.connect('7', 605)]);
    open.push(program);
    // More than the program's ring and socket hold, so some of it waits in the proxy's own vchan.
    const last = randomBytes(400 * 1024);
    await new Promise<void>((resolve) => peer.write(last, () => resolve()));
    peer.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    program.write('stdin EOF');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(sha(await readAll(program))).toBe(sha(last));
  });

  it('hands the program all the proxy took from a vchan that then failed', async () => {
    const [program, peer] = await Promise.all([viaProxy.listen('0', 606), dom0.connect('7', 606)]);
    open.push(program, peer);
    const [vchan] = owned as [Vchan];
    let taken = 0;
    vchan.on('data', (chunk: Buffer) => (taken += chunk.length));
    // The program reads nothing yet: the proxy's socket to it fills and the proxy queues the rest.
    await new Promise<void>((resolve) => peer.write(randomBytes(400 * 1024), () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 200));
    vchan.destroy(new Error('transport failed'));
    const received = await readAll(program);
    expect(taken).toBeGreaterThan(0);
    expect(received.length).toBe(taken);
  });

  it("reports the owner's failure as a VchanError with its reason", async () => {
    const failed = viaProxy.connect('0', 603);
    await expect(failed).rejects.toBeInstanceOf(VchanError);
    await expect(failed).rejects.toThrow(/vchan connect 0:603 through .*proxy\.sock: .+/);
  });

  it('fails clearly when nobody serves the proxy socket', async () => {
    const nowhere = new ProxyVchanTransport({ path: join(dir, 'missing.sock') });
    await expect(nowhere.listen('0', 604)).rejects.toThrow(/missing\.sock: .*ENOENT/);
  });
});
