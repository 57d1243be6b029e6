import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EventHub,
  VmmError,
  type BackendContext,
  type DomainRuntime,
  type DomainSpec,
  type DomainStats,
  type PowerState,
  type ShutdownOptions,
  type Vmm,
  type VmmCapabilities,
  type VmmEvent,
} from '@odyssey/hal';
import {
  CreateFlags,
  DomainState,
  ErrorCode,
  Libvirt,
  LifecycleEventType,
  ListDomainsFlags,
  MemoryStatTag,
  Reconnector,
  isLibvirtError,
  type Domain,
  type DomainInfo,
  type DomainLifecycleEvent,
  type LifecycleSubscription,
} from '@odyssey/libvirt';
import { CoalescedRuns } from './coalesced-runs.js';
import { CpuSampler } from './cpu-sampler.js';
import { isNoDomain, toVmmError } from './errors.js';
import { consolePtyPath } from './console-pty.js';
import type { LibvirtFlavour } from './flavour.js';
import { ACTIVE_STATES, toPowerState, toVmmEvent, unreportedStateAfter } from './lifecycle-events.js';
import type { LibvirtConnectionOptions } from './options.js';

export interface LibvirtVmmOptions extends LibvirtConnectionOptions {
  readonly log: BackendContext['log'];
}

const STATE_AFTER: Record<VmmEvent['type'], PowerState> = {
  started: 'Running',
  stopped: 'Halted',
  paused: 'Paused',
  unpaused: 'Running',
  suspended: 'Suspended',
  resumed: 'Running',
};

/** What state() says of a domain libvirt does not have. */
const HALTED: DomainRuntime = { state: 'Halted', xid: -1, memoryKb: 0, memoryMaxKb: 0, cpuTimeNs: 0 };

/** How often shutdown() re-reads the state while it waits, in case an event was lost in a reconnect. */
const STOP_POLL_MS = 250;
/**
 * libxl reports SHUTOFF seconds (4 s nested) before its cleanup ends with the stopped event, and
 * refuses to start the domain again until then; a stop seen by polling waits this long for it.
 */
const STOP_EVENT_GRACE_MS = 15_000;

/**
 * The HAL over one libvirt connection; the flavour says what differs per driver (domain XML,
 * capabilities, name rules, flags). Events survive libvirtd restarts: the client reconnects,
 * re-registers its callback, and the states seen before the outage are compared with the
 * daemon's so changes during it are still reported.
 */
export class LibvirtVmm implements Vmm {
  /** The connection, for a subclass that offers calls beyond the HAL's common ones. */
  protected readonly libvirt: Libvirt;
  private readonly reconnector: Reconnector;
  private readonly hub = new EventHub();
  private readonly cpu = new CpuSampler();
  /**
   * Last power state reported per domain name, for the domains libvirt has: one it no longer has
   * is forgotten, or every transient domain ever seen (libguestfs' appliances, say) would stay.
   */
  private readonly known = new Map<string, PowerState>();
  private readonly stops = new EventEmitter<Record<string, []>>();
  /**
   * Domains in start(): a late stop event of their last run must not clear what the new one
   * readied, and a pause or suspend is refused until the start has ended.
   */
  private readonly starting = new Set<string>();
  /**
   * Domains kill() stopped whose stop event has not come yet: that stop is 'destroyed' whatever
   * libvirt's detail says (its LXC driver can report the controller's end as FAILED just before
   * its own DESTROYED, and a second stop is not reported).
   */
  private readonly killed = new Set<string>();
  private subscription: LifecycleSubscription | undefined;
  /** The flavour's afterStop, coalesced per domain: every stop event asks for one. */
  private readonly afterStops = new CoalescedRuns((name) => this.runAfterStop(name));
  /** Checks after stop and undefine events whether libvirt still has the domain. */
  private readonly goneChecks = new CoalescedRuns((name) => this.forgetIfGone(name));

  constructor(
    private readonly flavour: LibvirtFlavour,
    private readonly options: LibvirtVmmOptions,
  ) {
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
    return this.flavour.capabilities();
  }

  async open(): Promise<void> {
    try {
      await this.libvirt.connect();
    } catch (error) {
      throw new VmmError('unavailable', `cannot reach libvirt at ${this.libvirt.uri}: ${String(error)}`, {
        cause: error,
      });
    }
    await this.call('prepare the host', async () => this.flavour.afterOpen?.(this.libvirt));
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
    const problem = this.flavour.nameProblem(spec.name);
    if (problem !== undefined) {
      throw new VmmError(
        'failed',
        `define: ${JSON.stringify(spec.name)} cannot name a ${this.capabilities().name} domain: ${problem}`,
      );
    }
    const xml = await this.call(`define ${spec.name}`, () => this.flavour.domainXml(spec, this.libvirt));
    await this.call(`define ${spec.name}`, () => this.libvirt.domains.defineXML(xml));
    if (!this.known.has(spec.name)) this.known.set(spec.name, 'Halted');
  }

  async undefine(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`undefine ${name}`, () =>
      this.libvirt.domains.undefine(dom, this.flavour.flags.undefine),
    );
    this.known.delete(name);
    await this.flavour.afterUndefine?.(name);
  }

  async start(name: string): Promise<void> {
    // From the call on: a pause or suspend asked right after it is refused, not raced with it.
    this.starting.add(name);
    try {
      const dom = await this.lookup(name);
      try {
        await this.call(`start ${name}`, async () => this.flavour.beforeStart?.(name));
        await this.create(dom, name);
      } catch (error) {
        await this.clearAfterStop(name);
        throw error;
      }
    } finally {
      this.starting.delete(name);
    }
  }

  private async create(dom: Domain, name: string): Promise<void> {
    // A fresh boot: a suspended domain's saved memory is discarded, as `resume` is the way back to it.
    if (this.flavour.flags.forceBoot) {
      await this.call(`start ${name}`, () => this.libvirt.domains.create(dom, CreateFlags.FORCE_BOOT));
      return;
    }
    await this.call(`start ${name}`, async () => {
      if (await this.libvirt.domains.hasManagedSaveImage(dom))
        await this.libvirt.domains.managedSaveRemove(dom);
      await this.libvirt.domains.create(dom);
    });
  }

  /**
   * The flavour's afterStop. Runs of one domain never overlap: a flood of stop events runs it
   * twice, not once per event.
   */
  private clearAfterStop(name: string): Promise<void> {
    return this.afterStops.request(name);
  }

  /** A failure is logged, as the domain is down whatever it left. */
  private async runAfterStop(name: string): Promise<void> {
    if (!this.flavour.afterStop) return;
    try {
      await this.flavour.afterStop(name);
    } catch (error) {
      this.options.log('warn', `clearing up after ${name} stopped failed: ${String(error)}`);
    }
  }

  async shutdown(name: string, options: ShutdownOptions): Promise<void> {
    const dom = await this.lookupOrUndefined(name);
    if (!dom || !(await this.isActive(dom))) return;
    const stopped = this.waitStopped(dom, options.timeoutMs);
    // A request libvirt fails is a failed shutdown only if the domain is still up at the deadline:
    // a QEMU killed while libvirt asked it to power off fails the request, yet the domain is down.
    let refused: unknown;
    try {
      if (!(await this.flavour.powerOff?.(name)))
        await this.libvirt.domains.shutdown(dom, this.flavour.flags.shutdown);
    } catch (error) {
      if (!isLibvirtError(error, ErrorCode.OPERATION_INVALID)) refused = error;
    }
    if (await stopped) return this.clearAfterStop(name);
    if (refused !== undefined) throw toVmmError(refused, `shutdown ${name}`);
    throw new VmmError('timeout', `${name} did not shut down within ${options.timeoutMs} ms`);
  }

  async kill(name: string): Promise<void> {
    const dom = await this.lookup(name);
    if (dom.id < 0 && (await this.discardSavedMemory(dom))) return;
    this.killed.add(name);
    try {
      await this.call(`kill ${name}`, () => this.libvirt.domains.destroy(dom));
    } catch (error) {
      this.killed.delete(name);
      throw error;
    }
    await this.clearAfterStop(name);
  }

  /**
   * A suspended domain is its managed save image, and libvirt's destroy refuses a domain that is
   * not running: discarding the image is its kill, as upstream's kill destroys a suspended guest.
   * False when there is no image (nothing to kill: destroy gives libvirt's refusal).
   */
  private async discardSavedMemory(dom: Domain): Promise<boolean> {
    const what = `kill ${dom.name}`;
    if (!(await this.call(what, () => this.libvirt.domains.hasManagedSaveImage(dom)))) return false;
    await this.call(what, () => this.libvirt.domains.managedSaveRemove(dom));
    this.known.set(dom.name, 'Halted');
    await this.clearAfterStop(dom.name);
    this.hub.publish({ type: 'stopped', name: dom.name, reason: 'destroyed' });
    return true;
  }

  async pause(name: string): Promise<void> {
    this.refuseWhileStarting(name, 'pause');
    const dom = await this.running(name, 'pause');
    await this.call(`pause ${name}`, () => this.libvirt.domains.suspend(dom));
  }

  async unpause(name: string): Promise<void> {
    const dom = await this.lookup(name);
    await this.call(`unpause ${name}`, () => this.libvirt.domains.resume(dom));
  }

  async suspend(name: string): Promise<void> {
    this.refuseWhileStarting(name, 'suspend');
    const dom = await this.running(name, 'suspend');
    await this.call(`suspend ${name}`, () => this.libvirt.domains.managedSave(dom));
  }

  async resume(name: string): Promise<void> {
    const dom = await this.lookup(name);
    const saved = await this.call(`resume ${name}`, () => this.libvirt.domains.hasManagedSaveImage(dom));
    if (!saved) throw new VmmError('invalid-state', `resume ${name}: the domain is not suspended`);
    await this.call(`resume ${name}`, () => this.libvirt.domains.create(dom));
  }

  /**
   * Upstream's pause and suspend first ask whether the domain runs; so do these (invalid-state,
   * where libvirt's own refusal differs per driver: its test driver calls it an internal error).
   * A domain in start() (its beforeStart, or libvirt's create, which would take a pause or a save
   * once it has the domain up, and leave core's start to wait for a guest that does not run) is
   * not running yet, as upstream's is_running() says before its create: invalid-state at once.
   */
  private refuseWhileStarting(name: string, what: string): void {
    if (this.starting.has(name))
      throw new VmmError('invalid-state', `${what} ${name}: the domain is still starting`);
  }

  async state(name: string): Promise<DomainRuntime> {
    const looked = await this.lookupOrUndefined(name);
    if (!looked) return HALTED;
    const info = await this.call(`state ${name}`, () => this.libvirt.domains.getInfo(looked));
    // libvirt gives a domain id -1 exactly while it is inactive. Where the id of the lookup and
    // the state disagree, a lookup after the state decides: SHUTOFF while still active is Dying,
    // or the domain started or stopped in between.
    const agree = looked.id >= 0 === (info.state !== DomainState.SHUTOFF);
    const dom = agree ? looked : await this.lookupOrUndefined(name);
    if (!dom) return HALTED;
    const running = dom.id >= 0;
    const saved =
      !running && (await this.call(`state ${name}`, () => this.libvirt.domains.hasManagedSaveImage(dom)));
    const state = toPowerState(info.state, running, saved);
    return {
      state,
      xid: running ? dom.id : -1,
      memoryKb: running ? await this.hostMemoryKb(dom, info) : 0,
      memoryMaxKb: running ? Number(info.maxMemory) : 0,
      cpuTimeNs: Number(info.cpuTime),
    };
  }

  async stats(): Promise<readonly DomainStats[]> {
    const doms = await this.call('stats', () => this.libvirt.domains.listAll(ListDomainsFlags.ACTIVE));
    const samples = await Promise.all(
      doms.map(async (dom) => {
        try {
          const info = await this.libvirt.domains.getInfo(dom);
          return { dom, info, memoryKb: await this.hostMemoryKb(dom, info) };
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
      const { dom, info, memoryKb } = sample;
      const key = `${dom.uuid}/${dom.id}`;
      live.add(key);
      stats.push({
        name: dom.name,
        memoryKb,
        memoryMaxKb: Number(info.maxMemory),
        cpuTimeNs: Number(info.cpuTime),
        cpuUsagePercent: this.cpu.sample(key, info.cpuTime, info.vcpus),
        onlineVcpus: info.vcpus,
      });
    }
    this.cpu.retain(live);
    return stats;
  }

  /** What the host pays for a running domain, KiB (see DomainRuntime.memoryKb and the flavour's hostMemory). */
  private async hostMemoryKb(dom: Domain, info: DomainInfo): Promise<number> {
    if (this.flavour.hostMemory !== 'rss') return Number(info.memory);
    try {
      const rss = (await this.libvirt.domains.memoryStats(dom)).find((s) => s.tag === MemoryStatTag.RSS);
      // A driver that measured no RSS of the domain's process: it costs nothing we can see.
      return rss ? Number(rss.val) : 0;
    } catch (error) {
      // Stopped since its info was read: it holds nothing any more.
      if (isNoDomain(error) || isLibvirtError(error, ErrorCode.OPERATION_INVALID)) return 0;
      throw toVmmError(error, `memory of ${dom.name}`);
    }
  }

  /**
   * The pty of a running domain's console, read from its live XML (a flavour declares the `console`
   * capability when its domain XML puts a console on a pty).
   */
  async consolePath(name: string): Promise<string> {
    const what = `reach the console of ${name}`;
    const dom = await this.lookup(name);
    if (!(await this.isActive(dom)))
      throw new VmmError('invalid-state', `${what}: the domain is not running`);
    const xml = await this.call(what, () => this.libvirt.domains.getXMLDesc(dom, 0));
    const path = consolePtyPath(xml);
    if (!path) throw new VmmError('unsupported', `${what}: its domain XML has no console on a pty`);
    return path;
  }

  /** The name of a domain named as vchan names it: by libvirt id (decimal) or by name. */
  async nameOf(domain: string): Promise<string> {
    if (!/^\d+$/.test(domain)) return domain;
    const dom = await this.call(`lookup domain ${domain}`, () =>
      this.libvirt.domains.lookupById(Number(domain)),
    );
    return dom.name;
  }

  /** The libvirt id of a running domain named by name or by id (decimal). */
  async idOf(domain: string): Promise<number> {
    if (/^\d+$/.test(domain)) return Number(domain);
    const dom = await this.lookup(domain);
    if (dom.id < 0) throw new VmmError('invalid-state', `${domain} is not running, so it has no domain id`);
    return dom.id;
  }

  private onLifecycle(ev: DomainLifecycleEvent): void {
    this.record(ev);
    // A transient domain is gone once it stops, a persistent one once undefined while stopped.
    if (ev.event === LifecycleEventType.STOPPED || ev.event === LifecycleEventType.UNDEFINED)
      void this.goneChecks.request(ev.domain.name);
  }

  /** Forgets `name` if libvirt no longer has it and no event told of it since the check began. */
  private async forgetIfGone(name: string): Promise<void> {
    const before = this.known.get(name);
    if (before === undefined) return;
    let gone: boolean;
    try {
      gone = (await this.lookupOrUndefined(name)) === undefined;
    } catch {
      // No answer (the connection dropped): the next resync compares and prunes.
      return;
    }
    if (gone && this.known.get(name) === before) this.known.delete(name);
  }

  private record(ev: DomainLifecycleEvent): void {
    let event = toVmmEvent(ev.domain.name, ev.event, ev.detail);
    if (!event) {
      // Nothing to publish, but the state it leaves is what state() reads (Halting after SHUTDOWN).
      const state = unreportedStateAfter(ev.event);
      if (state !== undefined) this.known.set(ev.domain.name, state);
      return;
    }
    if (event.type === 'started') this.killed.delete(ev.domain.name);
    if (event.type === 'stopped') {
      const reason = this.killed.delete(ev.domain.name)
        ? 'destroyed'
        : (this.flavour.stopReason?.(ev.domain.name, event.reason) ?? event.reason);
      event = { ...event, reason };
    }
    // A stop already taken from polling (its event came late): reporting it again could halt a new start.
    const seen = event.type === 'stopped' && this.known.get(ev.domain.name) === 'Halted';
    this.known.set(ev.domain.name, STATE_AFTER[event.type]);
    if (event.type === 'stopped' || event.type === 'suspended') {
      this.stops.emit(ev.domain.name);
      // A crash has no caller to clear up after it.
      if (!this.starting.has(ev.domain.name)) void this.clearAfterStop(ev.domain.name);
    }
    if (!seen) this.hub.publish(event);
  }

  /**
   * Learns libvirt's current states; after a reconnect (`report`), also publishes what changed
   * since the states reported before, as nobody else saw it happen.
   */
  private async resync(report: boolean): Promise<void> {
    const listed = new Set((await this.libvirt.domains.listAll(0)).map((d) => d.name));
    const names = new Set([...listed, ...this.known.keys()]);
    for (const name of names) {
      const now = (await this.state(name)).state;
      const before = this.known.get(name) ?? 'Halted';
      // Gone while we were away: reported below, then forgotten like any domain libvirt dropped.
      if (!listed.has(name) && now === 'Halted') this.known.delete(name);
      else this.known.set(name, now);
      if (report) for (const event of transition(name, before, now)) this.hub.publish(event);
      if (now === 'Halted' || now === 'Suspended') {
        this.stops.emit(name);
        if (!this.starting.has(name)) await this.clearAfterStop(name);
      }
    }
  }

  private async waitStopped(dom: Domain, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let stopped = false;
    let announced = false;
    let wake = (): void => undefined;
    const onStop = (): void => {
      stopped = announced = true;
      wake();
    };
    const nap = (ms: number) => Promise.race([sleep(ms), new Promise<void>((resolve) => (wake = resolve))]);
    this.stops.on(dom.name, onStop);
    try {
      while (!stopped && Date.now() < deadline) {
        await nap(STOP_POLL_MS);
        if (!stopped && this.libvirt.isConnected) stopped = !(await this.isActive(dom).catch(() => true));
      }
      if (stopped && !announced) {
        await nap(STOP_EVENT_GRACE_MS);
        if (!announced) this.known.set(dom.name, 'Halted');
      }
      return stopped;
    } finally {
      this.stops.off(dom.name, onStop);
    }
  }

  protected async isActive(dom: Domain): Promise<boolean> {
    try {
      const { state } = await this.libvirt.domains.getState(dom);
      return state !== DomainState.SHUTOFF;
    } catch (error) {
      if (isNoDomain(error)) return false;
      throw toVmmError(error, `state ${dom.name}`);
    }
  }

  /** The running domain `name`, for a change to it; invalid-state when it is not running. */
  protected async running(name: string, what: string): Promise<Domain> {
    const dom = await this.lookup(name);
    if (!(await this.isActive(dom))) throw new VmmError('invalid-state', `${what}: ${name} is not running`);
    return dom;
  }

  /** The domain `name` when it exists and runs. */
  protected async activeOrUndefined(name: string): Promise<Domain | undefined> {
    const dom = await this.lookupOrUndefined(name);
    return dom && (await this.isActive(dom)) ? dom : undefined;
  }

  protected async lookup(name: string): Promise<Domain> {
    return this.call(`lookup ${name}`, () => this.libvirt.domains.lookupByName(name));
  }

  protected async lookupOrUndefined(name: string): Promise<Domain | undefined> {
    try {
      return await this.libvirt.domains.lookupByName(name);
    } catch (error) {
      if (isNoDomain(error)) return undefined;
      throw toVmmError(error, `lookup ${name}`);
    }
  }

  protected async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw toVmmError(error, what);
    }
  }
}

/**
 * The events that lead from one observed state to another, for changes nobody reported. A domain
 * still active (Halting, Dying, Crashed among them) has not stopped: its stop comes when it has.
 */
function transition(name: string, before: PowerState, now: PowerState): VmmEvent[] {
  if (before === now) return [];
  const up = ACTIVE_STATES.has(now);
  const wasUp = ACTIVE_STATES.has(before);
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
