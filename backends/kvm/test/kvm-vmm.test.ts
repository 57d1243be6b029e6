import { randomBytes, randomUUID } from 'node:crypto';
import { constants, openSync } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadStream } from 'node:tty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainSpec, VmmEvent } from '@odyssey/hal';
import { KvmHostTransport } from '../../../vchan/src/kvm/index.js';
import { bootProbe } from '../src/accel-probe.js';
import { KvmVmm } from '../src/kvm-vmm.js';
import { Libvirt } from '@odyssey/libvirt';
import {
  guestImage,
  run,
  startLibvirtd,
  until,
  whyNoGuests,
  type GuestImage,
  type TestDaemon,
} from './helpers.js';

const skip = whyNoGuests();
if (skip) console.warn(`[kvm backend tests] SKIPPED: ${skip}`);

const MARKER = 'ODYSSEY-QREXEC-READY';
const ECHO_PORT = 9000;
const BOOT_MS = 60_000;
// Unique, because the crash test finds the QEMU process by its `-name guest=...` argument.
const VM = `kvmtest-${process.pid}`;

let work: string;
let daemon: TestDaemon;
let image: GuestImage;
let vmm: KvmVmm;
const events: VmmEvent[] = [];
const logs: string[] = [];
const startToMarkerMs: number[] = [];

function spec(name: string): DomainSpec {
  return {
    name,
    uuid: randomUUID(),
    memoryMiB: 512,
    maxMemoryMiB: 0,
    vcpus: 1,
    virtMode: 'hvm',
    kernel: {
      kernel: image.kernel,
      initramfs: image.initramfs,
      cmdline: `quiet odyssey.vchan_echo=${ECHO_PORT}`,
    },
    volumes: [],
    debug: false,
  };
}

async function consoleHas(name: string, text: string): Promise<boolean> {
  return (await readFile(vmm.files.consoleLog(name), 'utf8').catch(() => '')).includes(text);
}

async function waitMarker(name: string): Promise<void> {
  await until(
    async () => ((await consoleHas(name, MARKER)) ? true : undefined),
    BOOT_MS,
    `${MARKER} from ${name}`,
  );
}

async function startToMarker(name: string): Promise<number> {
  const t0 = Date.now();
  await vmm.start(name);
  await waitMarker(name);
  const ms = Date.now() - t0;
  startToMarkerMs.push(ms);
  return ms;
}

function waitEvent(match: (e: VmmEvent) => boolean, what: string, timeoutMs = 30_000): Promise<VmmEvent> {
  return until(() => events.find(match), timeoutMs, what);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

interface HostKvm {
  /** Whether a KVM guest can run here, from what the host has (not from booting one). */
  readonly works: boolean;
  readonly libvirtOffersKvm: boolean;
  readonly why: string;
}

/**
 * What this host gives KVM guests: no /dev/kvm; a /dev/kvm QEMU cannot use; KVM without
 * vmx/svm (a nested PVM KVM, whose guests die on the first instruction it lacks); or KVM
 * on hardware virtualisation, which boots guests.
 */
async function hostKvm(libvirt: Libvirt): Promise<HostKvm> {
  const caps = await libvirt.host.getCapabilities();
  const libvirtOffersKvm = /<arch name='x86_64'>[\s\S]*?<domain type='kvm'/.test(caps);
  const no = (why: string): HostKvm => ({ works: false, libvirtOffersKvm, why });
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return no('no usable /dev/kvm');
  }
  if (!libvirtOffersKvm) return no('/dev/kvm is there but QEMU (as libvirt probed it) does not support kvm');
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(await readFile('/proc/cpuinfo', 'utf8')))
    return no('KVM without vmx/svm in /proc/cpuinfo (nested PVM KVM)');
  return { works: true, libvirtOffersKvm, why: 'KVM on vmx/svm, offered by libvirt' };
}

describe.skipIf(skip)('KvmVmm on a private libvirtd with QEMU/TCG guests', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'odyssey-kvm-'));
    await chmod(work, 0o755);
    [daemon, image] = await Promise.all([startLibvirtd(), guestImage()]);
    vmm = new KvmVmm({
      uri: 'qemu:///system',
      socketPath: daemon.socket,
      runtimeDir: join(work, 'run'),
      log: (level, message) => logs.push(`${level}: ${message}`),
    });
    await vmm.open();
    void (async () => {
      for await (const e of vmm.events()) events.push(e);
    })();
  }, 180_000);

  afterAll(async () => {
    // QEMU outlives libvirtd: a domain a failed test left running must not outlive the test.
    await vmm?.kill(VM).catch(() => undefined);
    await vmm?.close();
    await daemon?.stop();
    if (startToMarkerMs.length > 0)
      console.log(`[kvm] vmm.start → ${MARKER} ms: ${startToMarkerMs.join(', ')}`);
    await rm(work, { recursive: true, force: true });
  }, 60_000);

  it('declares what it supports and picks the domain type by probing, not by what libvirt advertises', async () => {
    const caps = vmm.capabilities();
    expect(caps.name).toBe('kvm');
    expect(caps.vmToVmVchan.supported).toBe(true);
    expect(caps.pciDevices.supported).toBe(false);
    await vmm.define(spec('probe-only'));
    await vmm.undefine('probe-only');
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    if (!/\b(vmx|svm)\b/.test(cpuinfo)) expect(vmm.domainType).toBe('qemu');
    const verdict = JSON.parse(await readFile(vmm.files.accelVerdict(), 'utf8')) as {
      type: string;
      reason: string;
    };
    expect(verdict.type).toBe(vmm.domainType);
    expect(logs.join('\n')).toContain(`domain type ${verdict.type}: ${verdict.reason}`);
  });

  it('boot probe: a TCG guest boots the kernel; a KVM guest boots exactly when this host has working KVM', async () => {
    const libvirt = new Libvirt({ socketPath: daemon.socket });
    await libvirt.connect();
    try {
      // Generous: the verdict is about booting at all, and the cores are shared.
      const options = {
        libvirt,
        cacheFile: join(work, 'unused.json'),
        workDir: join(work, 'probe'),
        timeoutMs: 45_000,
      };
      const tcg = await bootProbe(options, 'qemu', image.kernel);
      expect(tcg).toMatchObject({ ok: true });
      const host = await hostKvm(libvirt);
      const kvm = await bootProbe(options, 'kvm', image.kernel);
      console.log(
        `[kvm] boot probe: TCG booted in ${tcg.ms} ms; this host: ${host.why}; ` +
          `KVM guest ${kvm.ok ? `booted in ${kvm.ms} ms` : `did not boot: ${kvm.why}`}`,
      );
      expect(kvm.ok).toBe(host.works);
      if (!host.works && !host.libvirtOffersKvm) expect(kvm.why).toMatch(/^libvirt refused a kvm guest: /);
    } finally {
      await libvirt.close();
    }
  }, 150_000);

  it('starts a guest to the qrexec-ready marker; state Running with a libvirt id; started event', async () => {
    await vmm.define(spec(VM));
    expect((await vmm.state(VM)).state).toBe('Halted');
    await startToMarker(VM);
    const state = await vmm.state(VM);
    expect(state.state).toBe('Running');
    expect(state.xid).toBeGreaterThan(0);
    // memoryKb is what the host pays (QEMU's resident set, compared with /proc below); the guest's size is the maximum.
    expect(state.memoryKb).toBeGreaterThan(0);
    expect(state.memoryMaxKb).toBe(512 * 1024);
    await waitEvent((e) => e.type === 'started' && e.name === VM, 'started');
    expect(await vmm.vchanSocket(String(state.xid))).toBe(vmm.files.vchanSocket(VM));
  }, 90_000);

  it('puts ttyS0 on a pty consolePath names, which carries the boot, and still logs it to the console log', async () => {
    await vmm.kill(VM);
    await expect(vmm.consolePath(VM)).rejects.toMatchObject({ code: 'invalid-state' });
    expect(vmm.capabilities().console?.supported).toBe(true);
    await vmm.start(VM);
    const path = await vmm.consolePath(VM);
    expect(path).toMatch(/^\/dev\/pts\/\d+$/);
    const pty = new ReadStream(openSync(path, constants.O_RDONLY | constants.O_NOCTTY));
    pty.setRawMode(true);
    let seen = '';
    pty.on('data', (chunk: Buffer) => (seen += chunk.toString('latin1')));
    try {
      await until(() => (seen.includes(MARKER) ? true : undefined), BOOT_MS, `${MARKER} on ${path}`);
    } finally {
      pty.destroy();
    }
    // QEMU writes its console log after the pty, through virtlogd: the log may lag the pty a little.
    await waitMarker(VM);
  }, 90_000);

  it('reports stats: cpu time grows, usage is a percentage', async () => {
    const sample = async () => {
      const stats = (await vmm.stats()).find((s) => s.name === VM);
      if (!stats) throw new Error(`no stats for ${VM}`);
      return stats;
    };
    const first = await sample();
    await new Promise((r) => setTimeout(r, 500));
    const second = await sample();
    expect(second.cpuTimeNs).toBeGreaterThan(first.cpuTimeNs);
    expect(second.cpuUsagePercent).toBeGreaterThan(0);
    expect(second.cpuUsagePercent).toBeLessThanOrEqual(100);
    expect(second.onlineVcpus).toBe(1);
    expect(second.memoryKb).toBeGreaterThan(0);
    expect(second.memoryMaxKb).toBe(512 * 1024);
  });

  it('moves vchan bytes host ↔ guest over virtio-serial and measures throughput', async () => {
    const transport = new KvmHostTransport({
      channelSocket: (d) => vmm.vchanSocket(d),
      connectTimeoutMs: 20_000,
    });
    try {
      const vchan = await transport.connect(VM, ECHO_PORT);
      expect(vchan.state()).toBe('connected');
      vchan.write(Buffer.from('ping'));
      const [pong] = (await new Promise((r) => vchan.once('data', (...a) => r(a)))) as [Buffer];
      expect(pong.toString()).toBe('ping');
      const data = randomBytes(8 * 1024 * 1024);
      const t0 = process.hrtime.bigint();
      const received: Buffer[] = [];
      let length = 0;
      const done = new Promise<void>((resolve) =>
        vchan.on('data', (chunk: Buffer) => {
          received.push(chunk);
          length += chunk.length;
          if (length >= data.length) resolve();
        }),
      );
      for (let off = 0; off < data.length; off += 65536) {
        if (!vchan.write(data.subarray(off, off + 65536))) await new Promise((r) => vchan.once('drain', r));
      }
      await done;
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      expect(Buffer.concat(received).equals(data)).toBe(true);
      const mbps = (2 * data.length) / 1024 / 1024 / seconds;
      console.log(
        `[kvm] vchan echo host→guest→host: 8 MiB each way in ${seconds.toFixed(2)} s = ${mbps.toFixed(1)} MB/s (both directions)`,
      );
      vchan.end();
    } finally {
      transport.close();
    }
  }, 60_000);

  it('pauses and unpauses, with events', async () => {
    await vmm.pause(VM);
    expect((await vmm.state(VM)).state).toBe('Paused');
    await waitEvent((e) => e.type === 'paused' && e.name === VM, 'paused');
    // What a paused guest costs the host is QEMU's resident set, not the 512 MiB the guest was given.
    const { stdout } = await run('pgrep', ['-f', `guest=${VM},`]);
    const rssKb = async (): Promise<number> =>
      Number(/^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${stdout.trim()}/status`, 'utf8'))?.[1]);
    const before = await rssKb();
    const { memoryKb } = await vmm.state(VM);
    const after = await rssKb();
    console.log(`[kvm] paused guest: QEMU RSS ${Math.round(memoryKb / 1024)} MiB (guest memory 512 MiB)`);
    // QEMU's own threads still run while the guest is paused; their pages come and go a little.
    expect(memoryKb).toBeGreaterThanOrEqual(Math.min(before, after) - 1024);
    expect(memoryKb).toBeLessThanOrEqual(Math.max(before, after) + 1024);
    expect(memoryKb).not.toBe(512 * 1024);
    await vmm.unpause(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
    await waitEvent((e) => e.type === 'unpaused' && e.name === VM, 'unpaused');
  });

  it('keeps domains and events across a libvirtd restart', async () => {
    await daemon.restart();
    await until(
      async () => ((await vmm.state(VM).catch(() => undefined))?.state === 'Running' ? true : undefined),
      30_000,
      'reconnect',
    );
    events.length = 0;
    await vmm.pause(VM);
    await waitEvent((e) => e.type === 'paused' && e.name === VM, 'paused after restart');
    await vmm.unpause(VM);
    await waitEvent((e) => e.type === 'unpaused' && e.name === VM, 'unpaused after restart');
    expect(logs.join('\n')).toContain('libvirt connection re-established');
  }, 60_000);

  it('suspends to disk and resumes (managed save)', async () => {
    events.length = 0;
    await vmm.suspend(VM);
    expect((await vmm.state(VM)).state).toBe('Suspended');
    await waitEvent((e) => e.type === 'suspended' && e.name === VM, 'suspended');
    await vmm.resume(VM);
    expect((await vmm.state(VM)).state).toBe('Running');
    await waitEvent((e) => e.type === 'resumed' && e.name === VM, 'resumed');
  }, 60_000);

  it('shuts a guest down cleanly through ACPI: stopped with reason shutdown', async () => {
    events.length = 0;
    const t0 = Date.now();
    await vmm.shutdown(VM, { timeoutMs: 20_000 });
    console.log(`[kvm] ACPI shutdown took ${Date.now() - t0} ms`);
    expect((await vmm.state(VM)).state).toBe('Halted');
    const stopped = await waitEvent((e) => e.type === 'stopped' && e.name === VM, 'stopped');
    expect(stopped).toMatchObject({ reason: 'shutdown' });
    expect(await consoleHas(VM, 'shutdown requested')).toBe(true);
  }, 30_000);

  it('kills a guest: stopped with reason destroyed', async () => {
    await startToMarker(VM);
    events.length = 0;
    await vmm.kill(VM);
    expect((await vmm.state(VM)).state).toBe('Halted');
    expect(await waitEvent((e) => e.type === 'stopped', 'stopped')).toMatchObject({
      name: VM,
      reason: 'destroyed',
    });
    await expect(vmm.kill(VM)).rejects.toMatchObject({ code: 'invalid-state' });
  }, 90_000);

  it('reports a guest whose QEMU process dies as stopped (crashed or failed)', async () => {
    await startToMarker(VM);
    events.length = 0;
    const { stdout } = await run('pgrep', ['-f', `guest=${VM},`]);
    const pid = Number(stdout.trim().split('\n')[0]);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    const stopped = await waitEvent((e) => e.type === 'stopped', 'stopped after SIGKILL');
    console.log(`[kvm] SIGKILL of QEMU reported as ${JSON.stringify(stopped)}`);
    expect(stopped).toMatchObject({ name: VM });
    expect(['crashed', 'failed']).toContain((stopped as { reason: string }).reason);
    expect((await vmm.state(VM)).state).toBe('Halted');
  }, 90_000);

  it('reports a guest kernel panic as stopped: crashed (pvpanic and on_crash destroy), not as a shutdown', async () => {
    const name = `${VM}-panic`;
    // The image's crash init loads the pvpanic driver, then exits: init exiting is a kernel panic.
    const cmdline = 'console=ttyS0 panic=-1 rdinit=/sbin/odyssey-crash';
    await vmm.define({
      ...spec(name),
      kernel: { kernel: image.kernel, initramfs: image.initramfs, cmdline },
    });
    try {
      events.length = 0;
      await vmm.start(name);
      const stopped = await waitEvent(
        (e) => e.type === 'stopped' && e.name === name,
        `stopped for ${name} after its kernel panicked`,
        BOOT_MS,
      );
      expect(await consoleHas(name, 'Kernel panic')).toBe(true);
      expect(stopped).toMatchObject({ reason: 'crashed' });
      expect((await vmm.state(name)).state).toBe('Halted');
    } finally {
      await vmm.kill(name).catch(() => undefined);
      await vmm.undefine(name);
    }
  }, 90_000);

  it('compares start latency with a bare `virsh start` of the same image', async () => {
    const xml = join(work, 'bare.xml');
    const consoleLog = join(work, 'bare.console');
    const bare: number[] = [];
    await mkdir(join(work, 'bare'), { recursive: true });
    await writeFile(
      xml,
      `<domain type='qemu'><name>${VM}-bare</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>${image.kernel}</kernel><initrd>${image.initramfs}</initrd>
<cmdline>console=ttyS0 panic=-1 quiet</cmdline></os><features><acpi/></features>
<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
<devices><serial type='file'><source path='${consoleLog}' append='off'/><target port='0'/></serial>
<channel type='unix'><source mode='bind' path='${join(work, 'bare', 'vchan.sock')}'/><target type='virtio' name='org.odyssey.vchan.0'/></channel>
<memballoon model='none'/></devices></domain>`,
    );
    const virsh = (...args: string[]) =>
      run('virsh', ['-q', '-c', daemon.virshUri, ...args], { timeout: 60_000 });
    await virsh('define', xml);
    try {
      for (let i = 0; i < 3; i++) {
        await rm(consoleLog, { force: true });
        const t0 = Date.now();
        await virsh('start', `${VM}-bare`);
        await until(
          async () =>
            (await readFile(consoleLog, 'utf8').catch(() => '')).includes(MARKER) ? true : undefined,
          BOOT_MS,
          'bare marker',
        );
        bare.push(Date.now() - t0);
        await virsh('destroy', `${VM}-bare`);
      }
    } finally {
      await virsh('destroy', `${VM}-bare`).catch(() => undefined);
      await virsh('undefine', `${VM}-bare`);
    }
    await startToMarker(VM);
    await vmm.kill(VM);
    const ours = median(startToMarkerMs.slice(-3));
    const theirs = median(bare);
    console.log(
      `[kvm] start → marker, median of 3: KvmVmm ${ours} ms (${startToMarkerMs.slice(-3).join(', ')}), virsh ${theirs} ms (${bare.join(', ')}), ratio ${(ours / theirs).toFixed(2)}`,
    );
    // A measurement, not a verdict (timings here are noisy): both boots must have reached the marker.
    expect([bare.length, startToMarkerMs.length >= 3]).toEqual([3, true]);
  }, 150_000);

  it('undefines a halted domain and forgets its runtime files', async () => {
    await vmm.undefine(VM);
    expect((await vmm.state(VM)).state).toBe('Halted');
    await expect(stat(vmm.files.domainDir(VM))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(vmm.start(VM)).rejects.toMatchObject({ code: 'no-such-domain' });
  });
});
