import { access, constants, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainState, type Domain, type Libvirt } from '@odyssey/libvirt';
import { END_ON_ANY_STOP, attrs, buildDomainXml, textNode } from '@odyssey/libvirt-hal';
import type { DomainType } from './domain-xml.js';

export interface AccelVerdict {
  readonly type: DomainType;
  /** Why: shown in logs and the backend's README, so an operator can see what was tried. */
  readonly reason: string;
  /** Host kernel the verdict was found on; a different kernel probes again. */
  readonly hostKernel: string;
  /** False while KVM could not be tried yet for want of a kernel; such a verdict is neither cached nor kept. */
  readonly final: boolean;
}

export interface AccelProbeOptions {
  readonly libvirt: Libvirt;
  /** Where the verdict is cached. */
  readonly cacheFile: string;
  /** Scratch directory for the probe guest's console. */
  readonly workDir: string;
  /** How long a KVM guest may take to boot its kernel to the point of panicking for want of a root fs. */
  readonly timeoutMs?: number;
  readonly cpuinfo?: string;
  readonly log?: (message: string) => void;
}

const PROBE_NAME = 'odyssey-accel-probe';
/** What a kernel prints once it has booted far enough to look for its root file system. */
const BOOTED = /VFS: Unable to mount root fs|Kernel panic/;
const KVM_FAILURE = /KVM internal error|emulation failure/;

/**
 * Decides between libvirt domain type `kvm` and `qemu` (TCG). libvirt advertises `kvm`
 * whenever /dev/kvm opens, even on hosts whose KVM cannot run a real guest (a nested
 * PVM KVM dies on the first instruction its emulator lacks), so the verdict comes from
 * evidence: the CPU must have vmx/svm, /dev/kvm must open, and a guest of type `kvm`
 * must boot the given kernel without root fs to its panic (on a working host well
 * under a second) before the timeout. The verdict is cached per host kernel.
 */
export async function probeAccel(
  options: AccelProbeOptions,
  kernel: string | undefined,
): Promise<AccelVerdict> {
  const cached = await readCached(options.cacheFile);
  if (cached) return cached;
  const verdict = await decide(options, kernel);
  if (verdict.final) await writeFile(options.cacheFile, `${JSON.stringify(verdict, null, 2)}\n`);
  options.log?.(`domain type ${verdict.type}: ${verdict.reason}`);
  return verdict;
}

async function readCached(file: string): Promise<AccelVerdict | undefined> {
  try {
    const verdict = JSON.parse(await readFile(file, 'utf8')) as AccelVerdict;
    return verdict.hostKernel === release() && verdict.final ? verdict : undefined;
  } catch {
    return undefined;
  }
}

async function decide(options: AccelProbeOptions, kernel: string | undefined): Promise<AccelVerdict> {
  const tcg = (reason: string, final = true): AccelVerdict => ({
    type: 'qemu',
    reason,
    hostKernel: release(),
    final,
  });
  const cpuinfo = options.cpuinfo ?? (await readFile('/proc/cpuinfo', 'utf8'));
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return tcg('no vmx/svm in /proc/cpuinfo');
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return tcg('no usable /dev/kvm');
  }
  if (kernel === undefined) return tcg('KVM unproven: no guest kernel to probe with yet', false);
  const booted = await bootProbe(options, 'kvm', kernel);
  return booted.ok
    ? { type: 'kvm', reason: `a KVM guest booted in ${booted.ms} ms`, hostKernel: release(), final: true }
    : tcg(`a KVM guest did not boot: ${booted.why}`);
}

export interface BootProbeResult {
  readonly ok: boolean;
  readonly ms: number;
  readonly why: string;
}

/** Boots `kernel` (no initramfs, no root) as a transient domain of `type` and watches its console for the panic. */
export async function bootProbe(
  options: AccelProbeOptions,
  type: DomainType,
  kernel: string,
): Promise<BootProbeResult> {
  const { libvirt, workDir } = options;
  const timeoutMs = options.timeoutMs ?? 20_000;
  await mkdir(workDir, { recursive: true, mode: 0o755 });
  const consoleLog = join(workDir, 'console.log');
  await rm(consoleLog, { force: true });
  const xml = probeXml(type, kernel, consoleLog);
  await libvirt.domains.lookupByName(PROBE_NAME).then(
    (stale) => libvirt.domains.destroy(stale).catch(() => undefined),
    () => undefined,
  );
  const started = Date.now();
  // libvirt refusing the type (QEMU without KVM support, an unusable /dev/kvm) is a "no", not an error.
  const refused = (e: unknown): BootProbeResult => ({
    ok: false,
    ms: Date.now() - started,
    why: `libvirt refused a ${type} guest: ${(e as Error).message}`,
  });
  let dom: Domain;
  try {
    dom = await libvirt.domains.defineXML(xml);
  } catch (e) {
    return refused(e);
  }
  try {
    try {
      await libvirt.domains.create(dom);
    } catch (e) {
      return refused(e);
    }
    for (;;) {
      const text = await readFile(consoleLog, 'utf8').catch(() => '');
      if (KVM_FAILURE.test(text)) return { ok: false, ms: Date.now() - started, why: 'KVM internal error' };
      if (BOOTED.test(text)) return { ok: true, ms: Date.now() - started, why: '' };
      const { state } = await libvirt.domains.getState(dom);
      if (state === DomainState.PAUSED)
        return { ok: false, ms: Date.now() - started, why: 'guest paused by QEMU' };
      if (state === DomainState.SHUTOFF || state === DomainState.CRASHED) {
        return { ok: false, ms: Date.now() - started, why: 'guest stopped before its kernel booted' };
      }
      if (Date.now() - started > timeoutMs) {
        return { ok: false, ms: Date.now() - started, why: `no kernel boot within ${timeoutMs} ms` };
      }
      await sleep(100);
    }
  } finally {
    await libvirt.domains.destroy(dom).catch(() => undefined);
    await libvirt.domains.undefine(dom).catch(() => undefined);
  }
}

function probeXml(type: DomainType, kernel: string, consoleLog: string): string {
  return buildDomainXml({
    ...attrs({ type }),
    name: PROBE_NAME,
    memory: textNode({ unit: 'MiB' }, 128),
    vcpu: '1',
    os: {
      type: textNode({ arch: 'x86_64', machine: 'pc' }, 'hvm'),
      kernel,
      cmdline: 'console=ttyS0 panic=-1',
    },
    features: { acpi: '' },
    ...END_ON_ANY_STOP,
    devices: {
      serial: { ...attrs({ type: 'file' }), source: attrs({ path: consoleLog }), target: attrs({ port: 0 }) },
      memballoon: attrs({ model: 'none' }),
    },
  });
}
