/**
 * A Xen netvm's client vifs, without Xen: a veth named and addressed as netback makes them
 * (vif<domid>.<devid>, MAC fe:ff:ff:ff:ff:ff) in a network namespace standing for the netvm, its
 * peer the client's NIC in another. The netvm's daemon runs with a xenstore kept in a JSON file
 * (the keys libxl writes into its backend directory); the client's is the ordinary daemon.
 * Assertions are about the interface the kernel shows, the key the daemon writes for netback, and
 * a packet from the client answered by the netvm.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalQubesDbServer, QubesDb } from '@odyssey/qubesdb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsUnavailable, sh } from './netns.js';
import { macOfClientIp, vifName } from '../src/net/addressing.js';

const DAEMON = new URL('../dist/net-daemon-main.js', import.meta.url).pathname;
const NET_DAEMON = new URL('../dist/net/net-daemon.js', import.meta.url).href;
const QUBESDB = new URL('../../qubesdb/dist/index.js', import.meta.url).href;
const tag = `odx${process.pid % 100000}`;
const NS = { vm: `${tag}-vm`, c: `${tag}-c`, c2: `${tag}-c2` };
const GATEWAY = '10.137.0.1';
const CLIENT = '10.137.0.9';
const NETBACK_MAC = 'fe:ff:ff:ff:ff:ff';

const skipReason = netnsUnavailable(DAEMON);
if (skipReason) console.log(`net-xen-vifs: skipped: ${skipReason}`);

/** The netvm's daemon with a file for its xenstore: what a Xen domU's main gets from libxenstore. */
const XEN_NETVM = `
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { NetDaemon } from '${NET_DAEMON}';
import { QubesDbClient } from '${QUBESDB}';
const [socket, storeFile, resolvConf] = process.argv.slice(2);
const load = () => JSON.parse(readFileSync(storeFile, 'utf8'));
// Replaced whole, as xenstore's transactions are atomic: the test reads the file while the daemon writes.
const save = (entries) => {
  writeFileSync(storeFile + '.new', JSON.stringify(entries));
  renameSync(storeFile + '.new', storeFile);
};
const xenstore = {
  read: async (path) => load()[path],
  write: async (path, value) => save({ ...load(), [path]: value }),
  remove: async (path) =>
    save(Object.fromEntries(Object.entries(load()).filter(([key]) => key !== path && !key.startsWith(path + '/')))),
};
const log = (message) => process.stderr.write('netvm: ' + message + '\\n');
const daemon = new NetDaemon({ qdb: await QubesDbClient.connect(socket), resolvConf, dhcpClient: () => ['true'], log, xenstore });
await daemon.start();
process.stdout.write('ODYSSEY-NETWORK-READY\\n');
`;

/** One UDP datagram to the address given, which makes the kernel resolve it first. */
const SEND_DATAGRAM = `const s = require('node:dgram').createSocket('udp4');
s.send('x', 9, process.argv[1], () => setTimeout(() => s.close(), 200));`;

let dir: string;
const children: ChildProcess[] = [];
const servers: LocalQubesDbServer[] = [];
const logs: Record<string, string> = {};

const nsExec = (ns: string, args: string[]) => sh(['ip', 'netns', 'exec', ns, ...args]);

function startIn(ns: string, args: string[], name: string): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  logs[name] = '';
  child.stderr.on('data', (d: Buffer) => (logs[name] += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ODYSSEY-NETWORK-READY')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}): ${logs[name]}`)));
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) {
    if (children.some((c) => c.exitCode !== null))
      throw new Error(`a daemon died waiting for ${what}: ${JSON.stringify(logs)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function qubesDb(name: string, entries: Record<string, string>): Promise<string> {
  const db = new QubesDb();
  for (const [key, value] of Object.entries(entries)) db.write(key, value);
  const server = await LocalQubesDbServer.listen(join(dir, `${name}.sock`), db);
  servers.push(server);
  return server.path;
}

const store = async (): Promise<Record<string, string>> =>
  JSON.parse(await readFile(join(dir, 'xenstore.json'), 'utf8')) as Record<string, string>;

describe.skipIf(skipReason !== undefined)("a Xen netvm's daemon and netback's vifs", () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'odyssey-xen-vifs-'));
    await writeFile(join(dir, 'netvm.mjs'), XEN_NETVM);
    await writeFile(
      join(dir, 'xenstore.json'),
      // Domain 9's vif has its address; domain 12's backend directory has none, domain 13's a hostile one.
      JSON.stringify({
        'backend/vif/9/0/ip': CLIENT,
        'backend/vif/9/0/hotplug-status': '',
        'backend/vif/9/1/ip': '10.137.0.99',
        'backend/vif/13/0/ip': `${CLIENT} 10.137.0.1; reboot`,
      }),
    );
    for (const ns of Object.values(NS)) sh(['ip', 'netns', 'add', ns]);
    for (const ns of Object.values(NS)) sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    await writeFile(join(dir, 'vm-resolv.conf'), 'nameserver 10.0.2.3\n');
    const vmSocket = await qubesDb('vm', {
      '/name': 'sys-firewall',
      '/qubes-netvm-gateway': GATEWAY,
      '/qubes-netvm-netmask': '255.255.255.255',
      '/qubes-netvm-primary-dns': '10.139.1.1',
      '/qubes-netvm-secondary-dns': '10.139.1.2',
      '/connected-ips': CLIENT,
    });
    await startIn(
      NS.vm,
      ['node', join(dir, 'netvm.mjs'), vmSocket, join(dir, 'xenstore.json'), join(dir, 'vm-resolv.conf')],
      'netvm',
    );
    const mac = '00:16:3e:5e:6c:09';
    await writeFile(join(dir, 'c-resolv.conf'), '');
    const socket = await qubesDb('c', {
      '/qubes-mac': mac,
      '/qubes-ip': CLIENT,
      '/qubes-netmask': '255.255.255.255',
      '/qubes-gateway': GATEWAY,
      '/qubes-primary-dns': '10.139.1.1',
      '/qubes-secondary-dns': '10.139.1.2',
    });
    const daemonArgs = [
      '--qubesdb',
      socket,
      '--resolv-conf',
      join(dir, 'c-resolv.conf'),
      '--dhcp-client',
      'true',
    ];
    await startIn(NS.c, ['node', DAEMON, ...daemonArgs], 'client');
    // Plugged after both daemons run, as libxl adds a vif to a running netvm.
    for (const [ifname, peer, ns, peerMac] of [
      ['vif9.0', 'eth0', NS.c, mac],
      ['vif12.0', 'eth0', NS.c2, '00:16:3e:5e:6c:0c'],
      ['vif13.0', 'eth1', NS.c2, '00:16:3e:5e:6c:0d'],
    ] as const) {
      const made = sh([
        ...['ip', 'link', 'add', 'name', ifname, 'address', NETBACK_MAC, 'netns', NS.vm, 'type', 'veth'],
        ...['peer', 'name', peer, 'address', peerMac, 'netns', ns],
      ]);
      if (!made.ok) throw new Error(`veth ${ifname}: ${made.out}`);
    }
  }, 60_000);

  afterAll(async () => {
    for (const child of children) child.kill();
    for (const ns of Object.values(NS)) sh(['ip', 'netns', 'del', ns]);
    await Promise.all(servers.map((server) => server.close()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('takes a netback vif over by the address in its backend directory, then tells netback it is connected', async () => {
    await until(
      'hotplug-status connected',
      async () => (await store())['backend/vif/9/0/hotplug-status'] === 'connected',
    );
    // netback's name stays (upstream's vifN.M), with the MAC that says which client it carries.
    const shown = nsExec(NS.vm, ['ip', '-o', 'link', 'show', 'dev', 'vif9.0']).out;
    expect(shown).toContain(`link/ether ${macOfClientIp(CLIENT)}`);
    expect(nsExec(NS.vm, ['ip', 'link', 'show', 'dev', vifName(CLIENT)]).ok).toBe(false);
    expect(nsExec(NS.vm, ['ip', '-o', 'address', 'show', 'dev', 'vif9.0']).out).toContain(
      `inet ${GATEWAY}/32`,
    );
    expect(nsExec(NS.vm, ['ip', 'route', 'show', CLIENT]).out).toContain('dev vif9.0');
    await until('the client in the allowed set', () =>
      nsExec(NS.vm, ['nft', 'list', 'set', 'ip', 'qubes', 'allowed']).out.includes('"vif9.0"'),
    );
  });

  it("the client finds its gateway through the vif: the netvm answers its ARP with the vif's new MAC", async () => {
    expect(nsExec(NS.c, ['ip', 'route', 'show', 'default']).out).toContain(`via ${GATEWAY} dev eth0`);
    const neighbour = (): string => {
      // The datagram itself is the netvm's to refuse (its input rules); the ARP before it is what counts.
      nsExec(NS.c, ['node', '-e', SEND_DATAGRAM, GATEWAY]);
      return nsExec(NS.c, ['ip', 'neigh', 'show', GATEWAY, 'dev', 'eth0']).out;
    };
    await until('the gateway resolved', () => neighbour().includes('lladdr'));
    expect(neighbour()).toContain(`lladdr ${macOfClientIp(CLIENT)}`);
  });

  it("removes a gone vif's backend directory (what libxl waits for to finish a detach), and only that one", async () => {
    // Netback unregisters the interface when the detached client's side has closed.
    expect(nsExec(NS.vm, ['ip', 'link', 'del', 'dev', 'vif9.0']).ok).toBe(true);
    await until(
      'the backend directory removed',
      async () => (await store())['backend/vif/9/0/ip'] === undefined,
    );
    expect(Object.keys(await store()).filter((key) => key.startsWith('backend/vif/9/'))).toEqual([
      'backend/vif/9/1/ip',
    ]);
    expect(logs['netvm']).toContain(`client ${CLIENT} is gone`);
  });

  it('leaves a vif whose backend directory names no address down and untouched, and says so', async () => {
    await until('the log line', () => logs['netvm']?.includes('vif12.0: no client address') ?? false);
    const shown = nsExec(NS.vm, ['ip', '-o', 'link', 'show', 'dev', 'vif12.0']).out;
    expect(shown).toContain(`link/ether ${NETBACK_MAC}`);
    expect(shown).toContain('state DOWN');
    expect((await store())['backend/vif/12/0/hotplug-status']).toBeUndefined();
  });

  it('leaves a vif whose backend directory names anything but one IPv4 address down and untouched', async () => {
    await until('the log line', () => logs['netvm']?.includes('vif13.0: no client address') ?? false);
    expect(logs['netvm']).toContain(JSON.stringify(`${CLIENT} 10.137.0.1; reboot`));
    const shown = nsExec(NS.vm, ['ip', '-o', 'link', 'show', 'dev', 'vif13.0']).out;
    expect(shown).toContain(`link/ether ${NETBACK_MAC}`);
    expect(shown).toContain('state DOWN');
    expect((await store())['backend/vif/13/0/hotplug-status']).toBeUndefined();
  });
});
