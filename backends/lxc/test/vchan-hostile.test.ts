import { existsSync, readdirSync, renameSync, symlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VchanError } from '@odyssey/hal';
import { SocketVchanTransport, vchanSocketPath } from '@odyssey/vchan';
import { LxcHostTransport } from '../src/host-transport.js';
import { RuntimeFiles } from '../src/runtime-files.js';
import { VchanRelay } from '../src/vchan-relay.js';
import { occupyThreadPool } from '../../../vchan/test/thread-pool.js';

/**
 * The domain's move in a race it can win from another core: once dom0 has bound a socket in a
 * directory the domain writes, and before dom0's next file operation by that name, the domain
 * renames a symlink over it. `raceOn(path, target)` makes dom0's next chmod or open of `path` lose.
 */
const race = vi.hoisted(() => ({ armed: new Map<string, string>() }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const lose = (path: unknown): void => {
    const target = race.armed.get(String(path));
    if (target === undefined) return;
    race.armed.delete(String(path));
    symlinkSync(target, `${String(path)}.tmp`);
    renameSync(`${String(path)}.tmp`, String(path));
  };
  return {
    ...fs,
    chmod: (path: string, mode: number) => (lose(path), fs.chmod(path, mode)),
    open: (path: string, ...rest: [number]) => (lose(path), fs.open(path, ...rest)),
  };
});
const raceOn = (path: string, target: string): void => void race.armed.set(path, target);

/** Two domains' vchan dirs on real sockets, as dom0 sees them; alpha has id 7, beta id 9. */
const IDS: Record<string, number> = { alpha: 7, beta: 9 };
let files: RuntimeFiles;
/** A file of the host no domain may change: dom0 runs as root, so a followed chmod would. */
let hostFile: string;
const logged: string[] = [];

const inDomain = (name: string): SocketVchanTransport =>
  new SocketVchanTransport({ localDomain: name, dir: files.vchanDir(name), connectTimeoutMs: 2000 });

function relayWith(options: { maxPerDomain?: number; nameOf?: (id: number) => Promise<string | undefined> }) {
  return new VchanRelay({
    files,
    idOf: (name) => Promise.resolve(IDS[name]),
    nameOf: options.nameOf ?? ((id) => Promise.resolve(Object.keys(IDS).find((n) => IDS[n] === id))),
    log: (_level, message) => logged.push(message),
    ...(options.maxPerDomain ? { maxPerDomain: options.maxPerDomain } : {}),
  });
}

async function serve(path: string, accepted: Socket[]): Promise<Server> {
  const server = createServer((socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

/** Polls a condition the relay reaches through inotify events; the test's own timeout bounds it. */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

beforeEach(async () => {
  files = new RuntimeFiles(await mkdtemp(join(tmpdir(), 'lxc-hostile-')));
  for (const name of Object.keys(IDS)) await mkdir(files.vchanDir(name), { recursive: true });
  hostFile = join(files.runtimeDir, 'shadow');
  await writeFile(hostFile, 'root:secret\n', { mode: 0o600 });
  logged.length = 0;
  race.armed.clear();
});

afterEach(async () => {
  await rm(files.runtimeDir, { recursive: true, force: true });
});

describe("dom0's lxc vchan server against the domain that owns its directory", () => {
  it('opens no file of the host to all when the domain swaps its socket for a symlink', async () => {
    const transport = new LxcHostTransport({
      nameOf: (domain) => Promise.resolve(domain),
      vchanDir: (name) => files.vchanDir(name),
    });
    const path = vchanSocketPath(files.vchanDir('alpha'), '0', 'alpha', 512);
    raceOn(path, hostFile);
    const listening = transport.listen('alpha', 512);
    // Before the fix the listen waits for its client, the host file already opened to all.
    const outcome = await Promise.race([
      listening.then(
        () => 'connected',
        (error: unknown) => error,
      ),
      waitFor(() => race.armed.size === 0).then(() => new Promise((resolve) => setTimeout(resolve, 50))),
    ]);
    expect(((await stat(hostFile)).mode & 0o777).toString(8)).toBe('600');
    expect(outcome).toBeInstanceOf(VchanError);
    // dom0's server is closed: libuv unlinked the name, the domain's symlink, not its target.
    expect(existsSync(path)).toBe(false);
    expect(existsSync(hostFile)).toBe(true);
  });
});

describe('lxc vchan relay against hostile domains', () => {
  let relay: VchanRelay;

  afterEach(() => relay.close());

  it("opens no file of the host to all when the peer swaps the stand-in for a symlink; the relay doesn't count", async () => {
    relay = relayWith({ maxPerDomain: 1 });
    await relay.watchExisting();
    const standIn = vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 600);
    raceOn(standIn, hostFile);
    const first = await inDomain('alpha').bind('9', 600);
    await waitFor(() => race.armed.size === 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(((await stat(hostFile)).mode & 0o777).toString(8)).toBe('600');
    // The refused stand-in is not one of alpha's relays: its next server is relayed.
    const next = await inDomain('alpha').bind('9', 601);
    const nextStandIn = vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 601);
    await waitFor(() => existsSync(nextStandIn) || logged.some((line) => line.includes('relays open')));
    expect(existsSync(nextStandIn)).toBe(true);
    for (const bound of [first, next]) bound.vchan.destroy();
  });

  it("joins the peer to no socket a symlink in the server's dir points to", async () => {
    relay = relayWith({});
    await relay.watchExisting();
    const reached: Socket[] = [];
    const victim = await serve(join(files.runtimeDir, 'libvirt-sock'), reached);
    const serverPath = vchanSocketPath(files.vchanDir('alpha'), 'alpha', '9', 602);
    const standIn = vchanSocketPath(files.vchanDir('beta'), '7', 'beta', 602);
    const bound = await inDomain('alpha').bind('9', 602);
    await waitFor(() => existsSync(standIn));
    // Every libuv pool thread waits, so the relay sees the swap only once beta has connected.
    const pool = occupyThreadPool(files.runtimeDir);
    symlinkSync(join(files.runtimeDir, 'libvirt-sock'), `${serverPath}.tmp`);
    renameSync(`${serverPath}.tmp`, serverPath);
    const beta = createConnection(standIn);
    beta.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => beta.once('close', () => resolve()));
    await new Promise((resolve) => beta.once('connect', resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await pool.release();
    await Promise.race([closed, waitFor(() => reached.length > 0)]);
    expect(reached).toHaveLength(0);
    for (const socket of reached) socket.destroy();
    victim.close();
    bound.vchan.destroy();
  });

  it('keeps to maxPerDomain stand-ins when a domain binds many sockets at once', async () => {
    let lookups = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // libvirt answers after every socket was seen, as a slow libvirtd does.
    relay = relayWith({
      maxPerDomain: 3,
      nameOf: async (id) => {
        lookups++;
        await gate;
        return Object.keys(IDS).find((n) => IDS[n] === id);
      },
    });
    await relay.watchExisting();
    const servers: Server[] = [];
    for (let port = 700; port < 712; port++)
      servers.push(await serve(vchanSocketPath(files.vchanDir('alpha'), 'alpha', '9', port), []));
    await waitFor(() => lookups >= 12);
    open();
    const refused = (): number => logged.filter((line) => line.includes('relays open')).length;
    await waitFor(() => refused() + readdirSync(files.vchanDir('beta')).length >= 12);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await readdir(files.vchanDir('beta'))).toHaveLength(3);
    expect(refused()).toBe(9);
    for (const server of servers) server.close();
  });
});
