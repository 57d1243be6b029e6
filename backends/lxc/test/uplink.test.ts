/**
 * A netvm's uplink on real containers through a private libvirtd: slirp4netns serves a tap in the
 * container's own network namespace (no host interface), the container gets 10.0.2.15 by DHCP and
 * reaches a server on the host's loopback as 10.0.2.2, as a KVM guest does through QEMU's user-mode
 * network; the slirp4netns goes with the domain (kill, crash) and with the backend (close), and a
 * backend that opens again serves the running domain's uplink anew. A domain without one gets none.
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainSpec } from '@odyssey/hal';
import { LxcVmm } from '../src/lxc-vmm.js';
import { SlirpUplinks, UPLINK_IFNAME, UPLINK_MAC } from '../src/slirp-uplinks.js';
import { LxcRig, agentPid, inContainerSh, run, whyNoContainers } from './support/containers.js';

const skip = whyNoContainers(['lz4', 'cpio', 'setpriv', 'nsenter', 'ip', 'slirp4netns']);
if (skip) console.warn(`[lxc uplink tests] SKIPPED: ${skip}`);

const NETVM = 'lxup-netvm';
const PLAIN = 'lxup-plain';

const spec = (name: string, n: number, uplink: boolean): DomainSpec => ({
  name,
  uuid: `7a0c0de0-0000-4000-8000-0000000000b${n}`,
  memoryMiB: 128,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  volumes: [],
  debug: false,
  network: { uplink },
});

/** `name mac` of each interface, as the container's own /sys shows them. */
async function interfaces(name: string): Promise<string[]> {
  const out = await inContainerSh(
    name,
    'for d in /sys/class/net/*; do echo "${d##*/} $(cat "$d/address")"; done',
  );
  return out.split('\n').filter(Boolean).sort();
}

/** The slirp4netns processes on the host: pid and arguments. */
async function slirps(): Promise<{ pid: number; args: string[] }[]> {
  const found = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args[0]?.endsWith('slirp4netns')) found.push({ pid: Number(entry), args: args.filter(Boolean) });
  }
  return found;
}

/** The slirp4netns serving the container whose init is `initPid`. */
async function slirpsOf(initPid: number): Promise<number[]> {
  return (await slirps()).filter((s) => s.args.includes(String(initPid))).map((s) => s.pid);
}

/** The container init's host pid: the agent's parent. */
async function initOf(name: string): Promise<number> {
  const status = await readFile(`/proc/${await agentPid(name)}/status`, 'utf8');
  return Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]);
}

/** Polls `check` until it holds, at most a minute (a crash's stop event comes when libvirt sends it). */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return true;
}

describe('slirp4netns probe', () => {
  it('refuses an uplink with the reason when slirp4netns is not on PATH', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'no-slirp-'));
    const path = process.env['PATH'];
    process.env['PATH'] = empty;
    try {
      const err = await new SlirpUplinks(() => undefined).probe().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'unsupported' });
      expect(String(err)).toMatch(/needs slirp4netns \(apt-get install slirp4netns\)/);
    } finally {
      process.env['PATH'] = path;
      await rm(empty, { recursive: true });
    }
  });
});

describe.skipIf(skip)('lxc uplink through slirp4netns on a private libvirtd', () => {
  let rig: LxcRig;
  let server: Server;
  let port: number;
  const payload = `odyssey uplink ${randomBytes(16).toString('hex')}\n`;
  const peers: string[] = [];

  /** The payload as the netvm reads it from the host's loopback server through 10.0.2.2. */
  const fetchFromHost = (): Promise<string> => inContainerSh(NETVM, `nc 10.0.2.2 ${port} </dev/null`);

  beforeAll(async () => {
    server = createServer((socket) => {
      peers.push(socket.remoteAddress ?? '');
      socket.end(payload);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    rig = await LxcRig.start('lxc-uplink-');
    await rig.vmm.define(spec(NETVM, 1, true));
    await rig.vmm.define(spec(PLAIN, 2, false));
    await rig.vmm.start(NETVM);
    await rig.vmm.start(PLAIN);
  }, 300_000);

  afterAll(async () => {
    await rig?.stop([NETVM, PLAIN]);
    server?.close();
  }, 60_000);

  it('gives the netvm a tap with the uplink MAC in its own namespace only; the other domain none', async () => {
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00', `${UPLINK_IFNAME} ${UPLINK_MAC}`]);
    expect(await interfaces(PLAIN)).toEqual(['lo 00:00:00:00:00:00']);
    const { stdout } = await run('ip', ['-j', 'link', 'show'], { timeout: 10_000 });
    const host = JSON.parse(stdout) as { ifname: string; address?: string }[];
    expect(host.filter((l) => l.ifname === UPLINK_IFNAME || l.address === UPLINK_MAC)).toEqual([]);
    const netvmInit = await initOf(NETVM);
    const [slirp, ...more] = await slirpsOf(netvmInit);
    expect(more).toEqual([]);
    expect(await slirpsOf(await initOf(PLAIN))).toEqual([]);
    // Sandboxed: every capability but CAP_NET_BIND_SERVICE dropped, and a seccomp filter.
    const status = await readFile(`/proc/${slirp}/status`, 'utf8');
    expect(/^CapEff:\s+(\w+)$/m.exec(status)?.[1]).toBe('0000000000000400');
    expect(/^Seccomp:\s+(\d)$/m.exec(status)?.[1]).toBe('2');
  }, 120_000);

  it("gets 10.0.2.15 by DHCP and reaches the host's loopback as 10.0.2.2", async () => {
    const applets = await inContainerSh(NETVM, 'busybox --list');
    expect(applets.split('\n')).toContain('udhcpc');
    // udhcpc's script (the root is read-only: /tmp is the container's tmpfs) sets what it leased.
    await inContainerSh(
      NETVM,
      `printf '%s\\n' '#!/bin/sh' '[ "$1" = bound ] && ip addr add "$ip/$mask" dev "$interface"; exit 0' >/tmp/dhcp.sh &&
       chmod +x /tmp/dhcp.sh && ip link set ${UPLINK_IFNAME} up && udhcpc -i ${UPLINK_IFNAME} -n -q -f -s /tmp/dhcp.sh`,
    );
    expect(await inContainerSh(NETVM, `ip -4 -o addr show dev ${UPLINK_IFNAME}`)).toMatch(
      / inet 10\.0\.2\.15\/24 /,
    );
    expect(await fetchFromHost()).toBe(payload);
    // slirp connects from the host's loopback on the guest's behalf.
    expect(peers).toEqual(['127.0.0.1']);
    await expect(inContainerSh(PLAIN, `nc -w 2 10.0.2.2 ${port} </dev/null`)).rejects.toThrow();
    expect(peers).toEqual(['127.0.0.1']);
  }, 120_000);

  it('ends with the backend; a backend that opens again serves the running domain anew', async () => {
    const netvmInit = await initOf(NETVM);
    await rig.vmm.close();
    expect(await slirpsOf(netvmInit)).toEqual([]);
    // The tap and the guest's address stay in the container's namespace.
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00', `${UPLINK_IFNAME} ${UPLINK_MAC}`]);
    rig.vmm = rig.newVmm();
    await rig.vmm.open();
    expect(await slirpsOf(netvmInit)).toHaveLength(1);
    expect(await fetchFromHost()).toBe(payload);
  }, 120_000);

  it('ends with a kill and with a crash; none is left', async () => {
    const vmm: LxcVmm = rig.vmm;
    const first = await initOf(NETVM);
    await vmm.kill(NETVM);
    expect(await slirpsOf(first)).toEqual([]);
    await vmm.start(NETVM);
    const second = await initOf(NETVM);
    expect(await slirpsOf(second)).toHaveLength(1);
    // A crash: libvirt's stop event reaches afterStop.
    process.kill(second, 'SIGKILL');
    expect(await eventually(async () => (await vmm.state(NETVM)).state === 'Halted')).toBe(true);
    expect(await eventually(async () => (await slirpsOf(second)).length === 0)).toBe(true);
  }, 180_000);
});
