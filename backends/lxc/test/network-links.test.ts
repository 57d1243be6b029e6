/**
 * Network links on real containers through a private libvirtd: attachLink gives the client an eth0
 * with its MAC and the netvm a vif<ip in hex> with backendMac(ip), one veth pair between their
 * network namespaces; packets cross it; detachLink takes both ends out; a container that stops
 * takes the pair with it and leaves no interface on the host.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendIfname, backendMac, type DomainSpec, type NetworkLink } from '@odyssey/hal';
import { LxcVmm } from '../src/lxc-vmm.js';
import { FRONTEND_IFNAME } from '../src/veth-links.js';
import { LxcRig, agentPid, inContainerSh, run, whyNoContainers } from './support/containers.js';

const skip = whyNoContainers(['lz4', 'cpio', 'setpriv', 'nsenter', 'ip']);
if (skip) console.warn(`[lxc network link tests] SKIPPED: ${skip}`);

const CLIENT = 'lxnet-client';
const NETVM = 'lxnet-netvm';
const LINK: NetworkLink = {
  frontendDomain: CLIENT,
  backendDomain: NETVM,
  mac: '00:16:3e:5e:6c:07',
  ip: '10.137.0.7',
};
const VIF = backendIfname(LINK.ip);
const VIF_MAC = backendMac(LINK.ip);

const spec = (name: string, n: number): DomainSpec => ({
  name,
  uuid: `7a0c0de0-0000-4000-8000-0000000000a${n}`,
  memoryMiB: 128,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  volumes: [],
  debug: false,
});

/** `name: mac` of each interface, as the container's own /sys shows them. */
async function interfaces(name: string): Promise<string[]> {
  const out = await inContainerSh(
    name,
    'for d in /sys/class/net/*; do echo "${d##*/} $(cat "$d/address")"; done',
  );
  return out.split('\n').filter(Boolean).sort();
}

/** The host's own interfaces that carry either MAC of the link. */
async function hostLeftovers(): Promise<string[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show'], { timeout: 10_000 });
  const links = JSON.parse(stdout) as { ifname: string; address?: string }[];
  return links
    .filter((l) => l.address === LINK.mac || l.address === VIF_MAC || l.ifname === VIF)
    .map((l) => l.ifname);
}

describe.skipIf(skip)('lxc network links on a private libvirtd', () => {
  let rig: LxcRig;
  let vmm: LxcVmm;

  beforeAll(async () => {
    rig = await LxcRig.start('lxc-net-');
    vmm = rig.vmm;
    for (const [i, name] of [CLIENT, NETVM].entries()) {
      await vmm.define(spec(name, i + 1));
      await vmm.start(name);
    }
  }, 300_000);

  afterAll(() => rig?.stop([CLIENT, NETVM]), 60_000);

  it('declares network supported', () => {
    expect(vmm.capabilities().network).toEqual({ supported: true });
  });

  it("attaches: the client's eth0 has its MAC, the netvm's vif has backendMac, no host interface", async () => {
    expect(await interfaces(CLIENT)).toEqual(['lo 00:00:00:00:00:00']);
    await vmm.attachLink(LINK);
    const ifindexes = 'cat /sys/class/net/*/ifindex';
    const before = [await inContainerSh(CLIENT, ifindexes), await inContainerSh(NETVM, ifindexes)];
    await vmm.attachLink(LINK); // twice changes nothing: the same pair, not a new one
    expect([await inContainerSh(CLIENT, ifindexes), await inContainerSh(NETVM, ifindexes)]).toEqual(before);
    expect(await interfaces(CLIENT)).toEqual([`${FRONTEND_IFNAME} ${LINK.mac}`, 'lo 00:00:00:00:00:00']);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00', `${VIF} ${VIF_MAC}`]);
    expect(VIF).toBe('vif0a890007');
    expect(await hostLeftovers()).toEqual([]);
  }, 120_000);

  it('carries packets between the two ends (addresses set by the test)', async () => {
    await inContainerSh(NETVM, `ip addr add 10.137.0.1/24 dev ${VIF} && ip link set ${VIF} up`);
    await inContainerSh(CLIENT, `ip addr add ${LINK.ip}/24 dev eth0 && ip link set eth0 up`);
    const out = await inContainerSh(CLIENT, 'ping -c 2 -W 5 10.137.0.1');
    expect(out).toMatch(/2 packets transmitted, 2 packets received/);
    const back = await inContainerSh(NETVM, `ping -c 1 -W 5 ${LINK.ip}`);
    expect(back).toMatch(/1 packets transmitted, 1 packets received/);
  }, 120_000);

  it('detaches: both ends gone; detaching again does nothing', async () => {
    await vmm.detachLink(LINK);
    expect(await interfaces(CLIENT)).toEqual(['lo 00:00:00:00:00:00']);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00']);
    await vmm.detachLink(LINK);
    expect(await hostLeftovers()).toEqual([]);
  }, 120_000);

  it("replaces a stale interface holding the netvm side's name", async () => {
    // A veth pair of its own (this kernel has no dummy driver): deleting the stale end takes both.
    const pid = await agentPid(NETVM);
    await run(
      'nsenter',
      ['-t', String(pid), '-n', 'ip', 'link', 'add', VIF, 'type', 'veth', 'peer', 'stale0'],
      {
        timeout: 10_000,
      },
    );
    expect((await interfaces(NETVM)).some((l) => l.startsWith(`${VIF} `) && l !== `${VIF} ${VIF_MAC}`)).toBe(
      true,
    );
    await vmm.attachLink(LINK);
    expect(await interfaces(CLIENT)).toEqual([`${FRONTEND_IFNAME} ${LINK.mac}`, 'lo 00:00:00:00:00:00']);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00', `${VIF} ${VIF_MAC}`]);
    await vmm.detachLink(LINK);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00']);
  }, 120_000);

  it('refuses to attach to a netvm that does not run (invalid-state)', async () => {
    await vmm.kill(NETVM);
    await expect(vmm.attachLink(LINK)).rejects.toMatchObject({ code: 'invalid-state' });
    await vmm.start(NETVM);
  }, 120_000);

  it('leaves no interface behind when the netvm, then the client, stops with the link attached', async () => {
    await agentPid(NETVM);
    await vmm.attachLink(LINK);
    await vmm.kill(NETVM);
    expect(await interfaces(CLIENT)).toEqual(['lo 00:00:00:00:00:00']);
    expect(await hostLeftovers()).toEqual([]);
    await vmm.detachLink(LINK); // the netvm is gone, the client's end with it: nothing to do

    await vmm.start(NETVM);
    await agentPid(NETVM);
    await vmm.attachLink(LINK);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00', `${VIF} ${VIF_MAC}`]);
    await vmm.kill(CLIENT);
    expect(await interfaces(NETVM)).toEqual(['lo 00:00:00:00:00:00']);
    expect(await hostLeftovers()).toEqual([]);
  }, 180_000);

  it('rejects a link whose MAC or address is not one', async () => {
    await vmm.start(CLIENT);
    await agentPid(CLIENT);
    await expect(vmm.attachLink({ ...LINK, mac: '00:16:3e:5e:6c' })).rejects.toMatchObject({
      code: 'failed',
    });
    await expect(vmm.attachLink({ ...LINK, ip: '10.137.0.256' })).rejects.toMatchObject({ code: 'failed' });
    expect(await interfaces(CLIENT)).toEqual(['lo 00:00:00:00:00:00']);
  }, 120_000);
});
