import { EventEmitter } from 'node:events';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EventHub,
  VmmError,
  supported,
  unsupported,
  type BackendContext,
  type DomainRuntime,
  type DomainSpec,
  type DomainStats,
  type PowerState,
  type ShutdownOptions,
  type Vmm,
  type VmmCapabilities,
  type VmmEvent,
} from '@odyssey/core/hal';
import {
  CreateFlags,
  DomainState,
  ErrorCode,
  Libvirt,
  ListDomainsFlags,
  Reconnector,
  ShutdownFlags,
  UndefineFlags,
  isLibvirtError,
  type Domain,
  type DomainLifecycleEvent,
  type LifecycleSubscription,
} from '@odyssey/libvirt';
import { probeAccel, type AccelVerdict } from './accel-probe.js';
import { CpuSampler } from './cpu-sampler.js';
import { domainXml, type DomainType } from './domain-xml.js';
import { isNoDomain, toVmmError } from './errors.js';
import { toPowerState, toVmmEvent } from './lifecycle-events.js';
import type { KvmEnvOptions } from './options.js';
import { RuntimeFiles } from './runtime-files.js';

export interface KvmVmmOptions extends KvmEnvOptions, BackendContext {
  /** How long a KVM probe guest may take to boot (see accel-probe.ts). */
  readonly probeTimeoutMs?: number;
}

const CAPABILITIES: VmmCapabilities = {
  name: 'kvm',
  // pv and pvh are Xen modes; every KVM guest is a (direct kernel boot) HVM guest.
  virtModes: ['hvm'],
  pause: supported,
  // Suspend is libvirt's managed save: memory goes to disk, the domain stops, resume restores it.
  suspend: supported,
  stats: supported,
  blockDevices: unsupported('block device attach/detach is not implemented by the KVM backend'),
  pciDevices: unsupported('PCI passthrough is not implemented by the KVM backend'),
  usbDevices: unsupported('USB passthrough is not implemented by the KVM backend'),
  vmToVmVchan: unsupported(
    "a KVM guest's one virtio-serial channel ends in the admin domain; KvmHostTransport can relay guest-to-guest vchans (relay: true, keepChannel per running guest), but odysseyd does not run it yet",
  ),
};

const STATE_AFTER: Record<VmmEvent['type'], PowerState> = {
  started: 'Running',
  stopped: 'Halted',
  paused: 'Paused',
  unpaused: 'Running',
  suspended: 'Suspended',
  resumed: 'Running',
};

/** How often shutdown() re-reads the state while it waits, in case an event was lost in a reconnect. */
const STOP_POLL_MS = 250;

/**
 * The HAL over libvirt's QEMU driver. Domain type `kvm` or `qemu` (TCG) comes from an
 * acceleration probe, never from configuration alone. Events survive libvirtd restarts:
 * the client reconnects, re-registers its callback, and the states seen before the
 * outage are compared with the daemon's so changes during it are still reported.
 */
export class KvmVmm implements Vmm {
  readonly files: RuntimeFiles;
  private readonly libvirt: Libvirt;
  private readonly reconnector: Reconnector;
  private readonly hub = new EventHub();
  private readonly cpu = new CpuSampler();
  /** Last power state reported per domain name. */
  private readonly known = new Map<string, PowerState>();
  private readonly stops = new EventEmitter<Record<string, []>>();
  private subscription: LifecycleSubscription | undefined;
  private accel: AccelVerdict | undefined;

  constructor(private readonly options: KvmVmmOptions) {
    this.files = new RuntimeFiles(options.runtimeDir);
    this.libvirt = new Libvirt({
      uri: options.uri,
      ...(options.socketPath ? { socketPath: options.socketPath } : {}),
    });
    this.reconnector = new Reconnector(this.libvirt, { maxDelayMs: 2000 });
    this.reconnector.on('retry', (error, attempt) => {
      if (attempt === 1) options.log('warn', `libvirt connection lost, reconnecting: ${error.message}`);
    });
    this.reconnector.on('reconnected', () => {
      options.log('info', 'libvirt connection re-established');
      this.resync(true).catch((e: unknown) =>
        options.log('warn', `re-sync after reconnect failed: ${String(e)}`),
      );
    });
    this.stops.setMaxListeners(0);
  }

  capabilities(): VmmCapabilities {
    return CAPABILITIES;
  }

  /** The domain type domains are defined with, once the probe has decided. */
  get domainType(): DomainType | undefined {
    return this.accel?.type;
  }

  async open(): Promise<void> {
    try {
      await this.libvirt.connect();
    } catch (error) {
      throw new VmmError('unavailable', `cannot reach libvirt at ${this.libvirt.uri}: ${String(error)}`, {
        cause: error,
      });
    }
    // QEMU runs as libvirt's unprivileged user and must reach the consoles and sockets below.
    await mkdir(this.files.runtimeDir, { recursive: true });
    await chmod(this.files.runtimeDir, 0o755);
    this.subscription = await this.call('subscribe to lifecycle events', () =>
      this.libvirt.subscribeLifecycle(),
    );
    this.subscription.on('event', (ev) => this.onLifecycle(ev));
    this.reconnector.start();
    await this.call('read domain states', () => this.resync(false));
  }

  async close(): Promise<void> {
    this.reconnector.stop();
    await this.subscription?.close().catch(() => undefined);
    await this.libvirt.close().catch(() => undefined);
    this.hub.close();
  }

  events(): AsyncIterable<VmmEvent> {
    return this.hub.subscribe();
  }

  async define(spec: DomainSpec): Promise<void> {
    // The name becomes a directory of the runtime dir.
    if (!/^[A-Za-z0-9_.+-]+$/.test(spec.name) || spec.name === '.' || spec.name === '..') {
      throw new VmmError('failed', `define: ${JSON.stringify(spec.name)} cannot name a KVM domain`);
    }
    const type = await this.call(`define ${spec.name}: acceleration probe`, () =>
      this.decideType(spec.kernel?.kernel),
    );
    const dir = this.files.domainDir(spec.name);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    await chmod(this.files.domainsDir(), 0o755);
    const xml = domainXml({
      spec,
      type,
      consoleLog: this.files.consoleLog(spec.name),
      vchanSocket: this.files.vchanSocket(spec.name),
    });
    await this.call(`define ${spec.name}`, () => this.libvirt.domains.defineXML(xml));
    if (!this.known.has(spec.name)) this.known.set(spec.name, 'Halted');
  }

  async undefine(name: string): Promise<void> {
    const dom = await this.lookup(name);
    const flags = UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA | UndefineFlags.NVRAM;
    await this.call(`undefine ${name}`, () => this.libvirt.domains.undefine(dom, flags));
    this.known.delete(name);
    await rm(this.files.domainDir(name), { recursive: true, force: true });
  }

  async start(name: string): Promise<void> {
    const dom = await this.lookup(name);
    // A fresh boot: a suspended domain's saved memory is discarded, as `resume` is the way back to it.
    await this.call(`start ${name}`, () => this.libvirt.domains.create(dom, CreateFlags.FORCE_BOOT));
  }

  async shutdown(name: string, options: ShutdownOptions): Promise<void> {
    const dom = await this.lookupOrUndefined(name);
    if (!dom || !(await this.isActive(dom))) return;
    const stopped = this.waitStopped(dom, options.timeoutMs);
    try {
      await this.libvirt.domains.shutdown(dom, ShutdownFlags.ACPI_POWER_BTN);
    } catch (error) {
      if (!isLibvirtError(error, ErrorCode.OPERATION_INVALID)) throw toVmmError(error, `shutdown ${name}`);
    }
    if (await stopped) return;
    if (!options.force) {
      throw new VmmError('timeout', `${name} did not shut down within ${options.timeoutMs} ms`);
    }
    this.options.log('warn', `${name} did not shut down within ${options.timeoutMs} ms; destroying it`);
    await this.libvirt.domains.destroy(dom).catch((error: unknown) => {
      if (!isLibvirtError(error, ErrorCode.OPERATION_INVALID)) throw toVmmError(error, `destroy ${name}`);
    });
  }

  async kill(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`kill ${name}`, () => this.libvirt.domains.destroy(dom));
  }

  async pause(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`pause ${name}`, () => this.libvirt.domains.suspend(dom));
  }

  async unpause(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`unpause ${name}`, () => this.libvirt.domains.resume(dom));
  }

  async suspend(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`suspend ${name}`, () => this.libvirt.domains.managedSave(dom));
  }

  async resume(name: string): Promise<void> {
    const dom = await this.lookup(name);
    const saved = await this.call(`resume ${name}`, () => this.libvirt.domains.hasManagedSaveImage(dom));
    if (!saved) throw new VmmError('invalid-state', `resume ${name}: the domain is not suspended`);
    await this.call(`resume ${name}`, () => this.libvirt.domains.create(dom));
  }

  async state(name: string): Promise<DomainRuntime> {
    const dom = await this.lookupOrUndefined(name);
    if (!dom) return { state: 'Halted', xid: -1, memoryKb: 0, memoryMaxKb: 0, cpuTimeNs: 0 };
    const info = await this.call(`state ${name}`, () => this.libvirt.domains.getInfo(dom));
    const saved =
      info.state === DomainState.SHUTOFF &&
      (await this.call(`state ${name}`, () => this.libvirt.domains.hasManagedSaveImage(dom)));
    const state = toPowerState(info.state, saved);
    const running = dom.id >= 0;
    return {
      state,
      xid: running ? dom.id : -1,
      memoryKb: running ? Number(info.memory) : 0,
      memoryMaxKb: running ? Number(info.maxMemory) : 0,
      cpuTimeNs: Number(info.cpuTime),
    };
  }

  async stats(): Promise<readonly DomainStats[]> {
    const doms = await this.call('stats', () => this.libvirt.domains.listAll(ListDomainsFlags.ACTIVE));
    const samples = await Promise.all(
      doms.map(async (dom) => {
        try {
          return { dom, info: await this.libvirt.domains.getInfo(dom) };
        } catch (error) {
          if (isNoDomain(error)) return undefined; // stopped and undefined between the two calls
          throw toVmmError(error, `stats ${dom.name}`);
        }
      }),
    );
    const live = new Set<string>();
    const stats: DomainStats[] = [];
    for (const sample of samples) {
      if (!sample) continue;
      const { dom, info } = sample;
      const key = `${dom.uuid}/${dom.id}`;
      live.add(key);
      stats.push({
        name: dom.name,
        memoryKb: Number(info.memory),
        memoryMaxKb: Number(info.maxMemory),
        cpuTimeNs: Number(info.cpuTime),
        cpuUsagePercent: this.cpu.sample(key, info.cpuTime, info.vcpus),
        onlineVcpus: info.vcpus,
      });
    }
    this.cpu.retain(live);
    return stats;
  }

  /**
   * The virtio-serial socket that carries the vchans of `remoteDomain`, named as vchan names
   * domains: by libvirt id (decimal) or by name.
   */
  async vchanSocket(remoteDomain: string): Promise<string> {
    if (!/^\d+$/.test(remoteDomain)) return this.files.vchanSocket(remoteDomain);
    const dom = await this.call(`vchan ${remoteDomain}`, () =>
      this.libvirt.domains.lookupById(Number(remoteDomain)),
    );
    return this.files.vchanSocket(dom.name);
  }

  private async decideType(kernel: string | undefined): Promise<DomainType> {
    if (this.accel) return this.accel.type;
    const verdict = await probeAccel(
      {
        libvirt: this.libvirt,
        cacheFile: this.files.accelVerdict(),
        workDir: this.files.probeDir(),
        ...(this.options.probeTimeoutMs ? { timeoutMs: this.options.probeTimeoutMs } : {}),
        log: (message) => this.options.log('info', message),
      },
      kernel,
    );
    if (verdict.final) this.accel = verdict;
    return verdict.type;
  }

  private onLifecycle(ev: DomainLifecycleEvent): void {
    const event = toVmmEvent(ev.domain.name, ev.event, ev.detail);
    if (!event) return;
    this.known.set(ev.domain.name, STATE_AFTER[event.type]);
    if (event.type === 'stopped' || event.type === 'suspended') this.stops.emit(ev.domain.name);
    this.hub.publish(event);
  }

  /**
   * Learns libvirt's current states; after a reconnect (`report`), also publishes what changed
   * since the states reported before, as nobody else saw it happen.
   */
  private async resync(report: boolean): Promise<void> {
    const names = new Set((await this.libvirt.domains.listAll(0)).map((d) => d.name));
    for (const name of this.known.keys()) names.add(name);
    for (const name of names) {
      const now = (await this.state(name)).state;
      const before = this.known.get(name) ?? 'Halted';
      this.known.set(name, now);
      if (report) for (const event of transition(name, before, now)) this.hub.publish(event);
      if (now === 'Halted' || now === 'Suspended') this.stops.emit(name);
    }
  }

  private async waitStopped(dom: Domain, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let stopped = false;
    let wake = (): void => undefined;
    const onStop = (): void => {
      stopped = true;
      wake();
    };
    this.stops.on(dom.name, onStop);
    try {
      while (!stopped && Date.now() < deadline) {
        await Promise.race([sleep(STOP_POLL_MS), new Promise<void>((resolve) => (wake = resolve))]);
        if (!stopped && this.libvirt.isConnected) stopped = !(await this.isActive(dom).catch(() => true));
      }
      return stopped;
    } finally {
      this.stops.off(dom.name, onStop);
    }
  }

  private async isActive(dom: Domain): Promise<boolean> {
    try {
      const { state } = await this.libvirt.domains.getState(dom);
      return state !== DomainState.SHUTOFF;
    } catch (error) {
      if (isNoDomain(error)) return false;
      throw toVmmError(error, `state ${dom.name}`);
    }
  }

  private async lookup(name: string): Promise<Domain> {
    return this.call(`lookup ${name}`, () => this.libvirt.domains.lookupByName(name));
  }

  private async lookupOrUndefined(name: string): Promise<Domain | undefined> {
    try {
      return await this.libvirt.domains.lookupByName(name);
    } catch (error) {
      if (isNoDomain(error)) return undefined;
      throw toVmmError(error, `lookup ${name}`);
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw toVmmError(error, what);
    }
  }
}

/** The events that lead from one observed state to another, for changes nobody reported. */
function transition(name: string, before: PowerState, now: PowerState): VmmEvent[] {
  if (before === now) return [];
  const up = now === 'Running' || now === 'Paused';
  const wasUp = before === 'Running' || before === 'Paused';
  const events: VmmEvent[] = [];
  if (wasUp && now === 'Suspended') events.push({ type: 'suspended', name });
  else if (wasUp && !up) events.push({ type: 'stopped', name, reason: 'unknown' });
  else if (!wasUp && up)
    events.push(before === 'Suspended' ? { type: 'resumed', name } : { type: 'started', name });
  if (before === 'Running' && now === 'Paused') events.push({ type: 'paused', name });
  if (before === 'Paused' && now === 'Running') events.push({ type: 'unpaused', name });
  if (!wasUp && now === 'Paused') events.push({ type: 'paused', name });
  return events;
}
