/**
 * Two real TCG guests of the busybox image joined by a link: the client's NIC from its domain XML,
 * the netvm's hot-plugged by attachLink; packets cross it (ping both ways), detachLink takes both
 * NICs out and attachLink plugs them back. Commands run in the guests through their qrexec agents,
 * over the raw vchan protocol as dom0's daemon speaks it.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendMac, type DomainSpec, type NetworkLink, type Vchan } from '@odyssey/hal';
import { Libvirt } from '@odyssey/libvirt';
import { KvmHostTransport } from '../../../vchan/src/kvm/index.js';
import {
  CONTROL_PORT,
  MSG,
  MessageReader,
  encode,
  execCmdline,
  hello,
} from '../../../conformance-tests/src/qrexec-wire.js';
import { udpInterfaces } from '../src/network-xml.js';
import { KvmVmm } from '../src/kvm-vmm.js';
import { guestImage, startLibvirtd, whyNoGuests, type GuestImage, type TestDaemon } from './helpers.js';

const skip = whyNoGuests();
if (skip) console.warn(`[kvm network link tests] SKIPPED: ${skip}`);

const NETVM = `netvm-${process.pid}`;
const CLIENT = `client-${process.pid}`;
const NETVM_IP = '10.137.0.1';
const CLIENT_IP = '10.137.0.9';
const link: NetworkLink = {
  frontendDomain: CLIENT,
  backendDomain: NETVM,
  mac: '00:16:3e:5e:6c:09',
  ip: CLIENT_IP,
};

let work: string;
let daemon: TestDaemon;
let image: GuestImage;
let vmm: KvmVmm;
let transport: KvmHostTransport;
let nextPort = 700;

function spec(name: string, network?: DomainSpec['network']): DomainSpec {
  return {
    name,
    uuid: randomUUID(),
    memoryMiB: 384,
    maxMemoryMiB: 0,
    vcpus: 1,
    virtMode: 'hvm',
    kernel: { kernel: image.kernel, initramfs: image.initramfs, cmdline: 'quiet' },
    volumes: [],
    ...(network ? { network } : {}),
    debug: false,
  };
}

/** dom0's control vchan to each guest's agent: one per guest, kept, as dom0's qrexec daemon keeps it. */
const controls = new Map<string, { vchan: Vchan; reader: MessageReader }>();

async function controlOf(domain: string): Promise<Vchan> {
  const known = controls.get(domain);
  if (known) return known.vchan;
  const vchan = await transport.connect(domain, CONTROL_PORT, { timeoutMs: 90_000 });
  const reader = new MessageReader(vchan);
  await reader.expect(MSG.HELLO, `the agent's HELLO in ${domain}`);
  vchan.write(hello());
  controls.set(domain, { vchan, reader });
  return vchan;
}

/** Runs `command` (busybox sh) in `domain` through its qrexec agent; its stdout and exit code. */
async function sh(domain: string, command: string): Promise<{ stdout: string; code: number }> {
  const control = await controlOf(domain);
  const port = nextPort++;
  // By name, as the control vchan: the transport has one channel per guest, keyed by how it is named.
  const listening = transport.listen(domain, port);
  control.write(execCmdline(port, `user:${command}`));
  const data = await listening;
  const reader = new MessageReader(data);
  await reader.expect(MSG.HELLO, `HELLO on the data vchan of ${domain}`);
  data.write(hello());
  data.write(encode(MSG.DATA_STDIN));
  const out: Buffer[] = [];
  for (;;) {
    const m = await reader.next();
    if (m.type === MSG.DATA_STDOUT) out.push(m.payload);
    if (m.type === MSG.DATA_EXIT_CODE) {
      data.end();
      return { stdout: Buffer.concat(out).toString(), code: m.payload.readInt32LE(0) };
    }
  }
}

/** Configures the interface with MAC `mac` (waiting for it to appear) with `ip`/24 in `domain`. */
async function configure(domain: string, mac: string, ip: string): Promise<void> {
  const script = [
    'for i in $(seq 120); do',
    `  dev=$(for d in /sys/class/net/*; do [ "$(cat $d/address)" = ${mac} ] && basename $d; done)`,
    '  [ -n "$dev" ] && break; sleep 0.5',
    'done',
    '[ -n "$dev" ] || { echo "no interface with MAC ' + mac + '"; ip -o link; exit 1; }',
    `ip addr flush dev $dev && ip addr add ${ip}/24 dev $dev && ip link set $dev up`,
  ].join('\n');
  const done = await sh(domain, script);
  expect(done, `configuring ${mac} in ${domain}`).toMatchObject({ code: 0 });
}

const ping = (from: string, to: string) => sh(from, `ping -c 3 -W 5 ${to}`);

describe.skipIf(skip)('KVM network links between two TCG guests', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'odyssey-kvm-net-'));
    await chmod(work, 0o755);
    [daemon, image] = await Promise.all([startLibvirtd(), guestImage()]);
    vmm = new KvmVmm({
      uri: 'qemu:///system',
      socketPath: daemon.socket,
      runtimeDir: join(work, 'run'),
      log: () => undefined,
    });
    await vmm.open();
    transport = new KvmHostTransport({ channelSocket: (d) => vmm.vchanSocket(d), connectTimeoutMs: 90_000 });
  }, 300_000);

  afterAll(async () => {
    for (const { vchan } of controls.values()) vchan.destroy();
    transport?.close();
    for (const name of [CLIENT, NETVM]) await vmm?.kill(name).catch(() => undefined);
    await vmm?.close();
    await daemon?.stop();
    await rm(work, { recursive: true, force: true });
  }, 60_000);

  it('carries packets between the client and its netvm, and detaches and re-attaches both sides', async () => {
    await vmm.define(spec(NETVM));
    await vmm.define(spec(CLIENT, { link, uplink: false }));
    await vmm.start(NETVM);
    await vmm.start(CLIENT);
    await vmm.attachLink(link);
    await vmm.attachLink(link); // twice changes nothing
    const libvirt = new Libvirt({ socketPath: daemon.socket });
    await libvirt.connect();
    const live = async (name: string) =>
      udpInterfaces(await libvirt.domains.getXMLDesc(await libvirt.domains.lookupByName(name)));
    /** The link NICs QEMU has that were hot-plugged (libvirt's domain XML does not list them). */
    const plugged = async (name: string) => {
      const dom = await libvirt.domains.lookupByName(name);
      const answer = JSON.parse(
        await libvirt.domains.qemuMonitorCommand(
          dom,
          JSON.stringify({ execute: 'qom-list', arguments: { path: '/machine/peripheral' } }),
        ),
      ) as { return: { name: string }[] };
      return answer.return.map((d) => d.name).filter((n) => n.startsWith('odyssey-link-'));
    };
    try {
      const [client] = await live(CLIENT);
      expect(client?.mac).toBe(link.mac);
      expect(await plugged(CLIENT)).toEqual([]);
      expect(await plugged(NETVM)).toEqual(['odyssey-link-fe000a890009']);

      await configure(NETVM, backendMac(CLIENT_IP), NETVM_IP);
      await configure(CLIENT, link.mac, CLIENT_IP);
      const there = await ping(CLIENT, NETVM_IP);
      expect(there.stdout).toMatch(/3 packets transmitted, 3 packets received/);
      const back = await ping(NETVM, CLIENT_IP);
      expect(back.stdout).toMatch(/3 packets transmitted, 3 packets received/);

      await vmm.detachLink(link);
      expect(await plugged(NETVM)).toEqual([]);
      expect(await live(CLIENT)).toEqual([]);
      expect(await plugged(CLIENT)).toEqual([]);
      const cut = await sh(CLIENT, `ping -c 2 -W 2 ${NETVM_IP}`);
      expect(cut.code).not.toBe(0);

      // The client's new NIC is a hot-plugged one, with new ports.
      await vmm.attachLink(link);
      expect(await plugged(CLIENT)).toEqual(['odyssey-link-00163e5e6c09']);
      expect(await plugged(NETVM)).toEqual(['odyssey-link-fe000a890009']);
      await configure(NETVM, backendMac(CLIENT_IP), NETVM_IP);
      await configure(CLIENT, link.mac, CLIENT_IP);
      expect((await ping(CLIENT, NETVM_IP)).stdout).toMatch(/3 packets received/);
    } finally {
      await libvirt.close();
    }
  }, 600_000);
});
