import { inject, injectable, injectAll } from 'tsyringe';

import type { Saver } from '../persist/saver.js';
import {
  type DomainRuntime,
  type DomainStats,
  type PowerState,
  type Vmm,
  type VmmCapabilities,
  VmmError,
  type VmmEvent,
} from '@odyssey/hal';
import type { AfterStart, Lifecycle, VmFiles } from './ports.js';
import { TOKENS } from '../tokens.js';
import type { App } from '../model/app.js';
import { deviceString } from '../model/devices.js';
import {
  QubesException,
  QubesNotImplementedError,
  QubesVMError,
  QubesVMNotFoundError,
  QubesVMNotHaltedError,
  QubesVMNotPausedError,
  QubesVMNotRunningError,
  QubesVMNotStartedError,
  QubesVMShutdownTimeoutError,
} from '../model/errors.js';
import { checkCustomPersist } from '../model/custom-persist.js';
import type { Vm } from '../model/vm.js';
import type { Backend } from './backend.js';
import { buildDomainSpec } from './domain-spec.js';
import { installGuiAudioInUse } from './gui-audio-in-use.js';
import { NetworkLinks } from './network-links.js';
import type { VmStorage } from '../storage/vm-storage.js';
import type { Log } from '../log.js';
import { timerMs, type Clock } from '../clock.js';
import { P } from '../model/vm-properties.js';

/** How long the daemon waits before asking an unreachable hypervisor again (its id, a failed start's end). */
const RETRY_MS = 1000;

/**
 * The states of an active domain that no event announces: upstream reads them from libvirt at
 * every call (Halting is libvirt's SHUTDOWN, the hypervisor taking the domain down; Dying its
 * SHUTOFF while still active; Crashed), never from a Shutdown it asked for. So whenever the
 * backend is asked, its word among these is taken as it is; Paused and Suspended have events.
 */
const UNANNOUNCED: ReadonlySet<PowerState> = new Set<PowerState>(['Running', 'Halting', 'Dying', 'Crashed']);

/**
 * Power operations over the Vmm, with upstream's state checks and events. The
 * VM's powerState is the daemon's view: updated by our own operations and by
 * the backend's events (guest poweroff, crash), whichever comes first, so each
 * transition is announced once; and by the backend's state() wherever it is
 * asked (CurrentState, a resync). The checks read this view: asking the backend
 * at each would hold a check behind a hung guest (KVM's state() reads memory
 * from QEMU's monitor), where upstream's libvirt state read does not wait.
 */
@injectable()
export class DomainManager implements Lifecycle {
  private readonly halting = new Map<Vm, Promise<void>>();
  /** Failed starts whose domain may still run on their volumes (the hypervisor could not say): never adopted as running. */
  private readonly unreleased = new Set<Vm>();
  readonly network: NetworkLinks;

  constructor(
    @inject(TOKENS.App) private readonly app: App,
    @inject(TOKENS.Backend) private readonly backend: Backend,
    @inject(TOKENS.Log) private readonly log: Log,
    @inject(TOKENS.VmFiles) private readonly vmFiles: VmFiles,
    @inject(TOKENS.Saver) private readonly saver: Saver,
    @inject(TOKENS.Storage) private readonly storage: VmStorage,
    @inject(TOKENS.Clock) private readonly clock: Clock,
    @injectAll(TOKENS.AfterStart, { isOptional: true }) private readonly afterStart: readonly AfterStart[],
  ) {
    this.network = new NetworkLinks(app, () => backend.current ?? undefined, log);
    installGuiAudioInUse(app);
  }

  private vmm(vm: Vm, action: string): Vmm {
    const vmm = this.backend.current;
    if (!vmm) {
      throw new QubesVMError(
        `Cannot ${action} ${vm.name}: backend ${this.backend.name} is unavailable: ${this.backend.unavailableReason}`,
      );
    }
    return vmm;
  }

  /** Runs one lifecycle action and logs how it ended, so the journal holds every power change asked for. */
  private async logged(action: string, vm: Vm, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (e) {
      this.log('warn', `${action} ${vm.name}: failed: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    }
    this.log('info', `${action} ${vm.name}: ok (${vm.powerState})`);
  }

  /** Domains the daemon never powers: dom0 is always running, remote domains live elsewhere. */
  private static managed(vm: Vm): boolean {
    return vm.klass !== 'AdminVM' && vm.klass !== 'RemoteVM';
  }

  async start(vm: Vm): Promise<void> {
    return this.logged('start', vm, async () => {
      if (vm.isAdminVm) throw new QubesVMNotHaltedError('Cannot start Dom0 fake domain!');
      // Upstream compares with Halted, not is_running(): Paused, Halting, Dying, Crashed are left be too.
      if (!DomainManager.managed(vm) || vm.powerState !== 'Halted') return;
      // A stop still being handled is finished first (upstream's _ensure_shutdown_handled); it may
      // have removed an auto_cleanup disposable, which upstream's first check then finds gone.
      const stopping = this.halting.get(vm);
      if (stopping) await stopping.catch(() => undefined);
      if (this.app.domains.byName(vm.name) !== vm) throw new QubesVMNotFoundError(vm.name);
      // Upstream's start holds a lock: a start that began while this one waited is the one that runs.
      if (vm.powerState !== 'Halted') return;
      // An empty rationale prohibits nothing: upstream tests the feature's truth.
      const prohibit = vm.features.get('prohibit-start');
      if (prohibit) {
        const reason = `Qube start is prohibited. Rationale: ${prohibit}`;
        this.app.events.fire(vm, 'domain-start-failed', { reason: reason });
        throw new QubesException(reason);
      }
      const vmm = this.vmm(vm, 'start');
      if (this.unreleased.has(vm)) await this.releaseFailedStart(vm, vmm);
      if (this.unreleased.has(vm))
        throw new QubesVMError(`${vm.name}: the domain of its failed start may still run on its volumes`);
      this.app.events.fire(vm, 'domain-pre-start', { start_guid: 'True' });
      const refusal = DomainManager.preStartRefusal(vm);
      if (refusal) {
        this.app.events.fire(vm, 'domain-start-failed', { reason: refusal.message });
        throw refusal;
      }
      // Transient until started: the backend's own 'started' event must not announce it a second time.
      vm.powerState = 'Transient';
      let disksReady = false;
      try {
        // After the device check, as upstream: a qube that cannot start leaves its netvm be.
        const netvm = vm.netvm;
        // Upstream's netvm reads the rules as the qube spawns, failing its start without them.
        if (netvm) vm.checkFirewall();
        // Its QubesDB is written as it spawns: a path it would be told to keep and cannot is a failed start.
        for (const [name, value] of vm.features.entries()) checkCustomPersist(name, value);
        if (netvm && DomainManager.managed(netvm) && !netvm.isRunning) await this.start(netvm);
        const disks = await this.storage.start(vm);
        disksReady = true;
        await vmm.define(buildDomainSpec(vm, disks));
        await vmm.start(vm.name);
        await this.runAfterStart(vm, vmm);
      } catch (e) {
        vm.powerState = 'Halted';
        if (disksReady) await this.releaseFailedStart(vm, vmm);
        const reason = e instanceof Error ? e.message : String(e);
        this.app.events.fire(vm, 'domain-start-failed', { reason: reason });
        // Upstream re-raises its own exceptions (a storage refusal stays a StoragePoolException).
        if (e instanceof QubesException) throw e;
        throw new QubesException(`Start failed: ${reason}`);
      }
      const rt = await vmm.state(vm.name).catch(() => null);
      this.markRunning(vm, rt?.xid ?? -1);
      if (!rt) this.learnXid(vm, vmm);
      await this.network.started(vm);
      this.app.events.fire(vm, 'domain-spawn', { start_guid: 'True' });
      this.app.events.fire(vm, 'domain-start', { start_guid: 'True' });
    });
  }

  /**
   * A domain that came up while the hypervisor stopped answering (libvirtd restarting) runs with an
   * id nobody could read then: it is asked again until the hypervisor answers, or the domain is gone.
   */
  private learnXid(vm: Vm, vmm: Vmm): void {
    const retry = setTimeout(() => {
      if (vm.powerState === 'Halted' || vm.xid !== -1 || this.backend.current !== vmm) return;
      vmm
        .state(vm.name)
        .then(
          async (rt) => {
            if (vm.powerState === 'Halted' || vm.xid !== -1) return;
            if (rt.state === 'Halted') return this.markHalted(vm, 'unknown');
            vm.xid = rt.xid;
            this.app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
          },
          () => this.learnXid(vm, vmm),
        )
        .catch((e: unknown) => this.log('warn', `${vm.name}: ${String(e)}`));
    }, RETRY_MS);
    retry.unref();
  }

  /**
   * The volumes of a failed start are released once its domain is down. While the hypervisor does
   * not answer (libvirtd restarting) the domain may still run on them: it is killed, and they are
   * released, when the hypervisor answers again; until then a state sync that finds it running
   * does not take it for a started qube (its QubesDB and agent were never set up).
   */
  private async releaseFailedStart(vm: Vm, vmm: Vmm): Promise<void> {
    const deferred = this.unreleased.has(vm);
    if (!(await this.isDown(vm, vmm))) {
      if (this.unreleased.has(vm)) return;
      this.unreleased.add(vm);
      this.log(
        'warn',
        `${vm.name}: its failed start may still run; it is killed once ${this.backend.name} answers`,
      );
      this.retryRelease(vm, vmm);
      return;
    }
    // Another attempt found it down first and released the volumes.
    if (deferred && !this.unreleased.delete(vm)) return;
    await this.storage.stop(vm).catch((err: unknown) => this.log('warn', String(err)));
    if (deferred) this.log('info', `${vm.name}: the domain of its failed start is down; volumes released`);
  }

  private retryRelease(vm: Vm, vmm: Vmm): void {
    const retry = setTimeout(() => {
      if (!this.unreleased.has(vm)) return;
      void this.releaseFailedStart(vm, vmm).finally(() => {
        if (this.unreleased.has(vm)) this.retryRelease(vm, vmm);
      });
    }, RETRY_MS);
    retry.unref();
  }

  /** Kills what a failed start may have left running; false while the hypervisor cannot say. */
  private async isDown(vm: Vm, vmm: Vmm): Promise<boolean> {
    try {
      await vmm.kill(vm.name);
      return true;
    } catch (e) {
      if (e instanceof VmmError && e.code === 'unavailable') return false;
      const rt = await vmm.state(vm.name).catch(() => null);
      return rt?.state === 'Halted';
    }
  }

  /** The steps that make a running domain started (its QubesDB, its qrexec agent), in order; a failed one kills it. */
  private async runAfterStart(vm: Vm, vmm: Vmm): Promise<void> {
    if (this.afterStart.length === 0) return;
    const { xid } = await vmm.state(vm.name);
    try {
      for (const step of this.afterStart) await step.afterStart({ name: vm.name, xid });
    } catch (e) {
      await vmm.kill(vm.name).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Upstream's shutdown: refused for a halted qube; past that check every failure, its own
   * refusals included, is announced as domain-shutdown-failed. The state stays what the
   * hypervisor says (Running while the guest goes down) until the domain has stopped.
   */
  async shutdown(vm: Vm, options: { force: boolean; wait: boolean }): Promise<void> {
    return this.logged('shutdown', vm, async () => {
      if (vm.isAdminVm) throw new QubesVMError('Cannot shutdown Dom0 fake domain!');
      if (!DomainManager.managed(vm)) throw new QubesVMError(`${vm.name} cannot be shut down`);
      if (vm.powerState === 'Halted') throw QubesVMNotStartedError.forVm(vm.name);
      let vmm: Vmm;
      let paused: boolean;
      try {
        this.app.events.fire(vm, 'domain-pre-shutdown', { force: options.force ? 'True' : 'False' });
        paused = vm.powerState === 'Paused';
        // A preload is paused by design: upstream lets it go without force.
        if (paused && !options.force && !vm.bool('is_preload')) throw QubesVMNotRunningError.forVm(vm.name);
        vmm = this.vmm(vm, 'shut down');
        // A paused guest cannot run its own shutdown: upstream destroys it.
        if (paused) await this.call(vm, 'kill', (v) => v.kill(vm.name));
      } catch (e) {
        this.shutdownFailed(vm, e);
        throw e;
      }
      if (!paused) return this.requestShutdown(vm, vmm, options);
      await this.markHalted(vm, 'destroyed');
    });
  }

  /** Asks the guest to shut down; with wait, until it has (upstream waits shutdown_timeout, then gives up). */
  private async requestShutdown(vm: Vm, vmm: Vmm, options: { wait: boolean }): Promise<void> {
    const timeoutMs = timerMs(vm.props.get(P.shutdown_timeout));
    const done = vmm.shutdown(vm.name, { timeoutMs }).then(
      () => this.markHalted(vm, 'shutdown'),
      (e: unknown) => {
        // The reason is only known here: the answer below is upstream's one for any failed shutdown.
        this.log('warn', `shutdown ${vm.name}: ${this.shutdownFailed(vm, e)}`);
        throw QubesVMShutdownTimeoutError.forVm(vm.name);
      },
    );
    if (options.wait) await done;
    // Announced and logged already; nobody waits for it.
    else done.catch(() => undefined);
  }

  /** Announces a failed shutdown as upstream does; returns the reason. */
  private shutdownFailed(vm: Vm, e: unknown): string {
    const reason = e instanceof Error ? e.message : String(e);
    this.app.events.fire(vm, 'domain-shutdown-failed', { reason: reason });
    return reason;
  }

  async kill(vm: Vm): Promise<void> {
    return this.logged('kill', vm, async () => {
      if (vm.isAdminVm) throw new QubesVMError('Cannot kill Dom0 fake domain!');
      if (!DomainManager.managed(vm)) throw new QubesVMError(`${vm.name} cannot be killed`);
      // Upstream: neither is_running() nor is_paused() (which implies the first).
      if (!vm.isRunning) throw QubesVMNotStartedError.forVm(vm.name);
      try {
        await this.call(vm, 'kill', (vmm) => vmm.kill(vm.name));
      } catch (e) {
        // Stopped by itself (a crash) after the check above, its event not yet here: the answer the
        // check would have given a moment later, and the stop handled now.
        const rt = await this.backend.current?.state(vm.name).catch(() => undefined);
        if (rt?.state !== 'Halted') throw e;
        await this.markHalted(vm, 'unknown');
        throw QubesVMNotStartedError.forVm(vm.name);
      }
      await this.markHalted(vm, 'destroyed');
    });
  }

  /**
   * Upstream only asks whether the hypervisor has the domain active (is_running()): a suspended,
   * halting or crashed domain is handed to the hypervisor too, whose refusal is the answer.
   */
  async pause(vm: Vm): Promise<void> {
    return this.logged('pause', vm, async () => {
      if (!DomainManager.managed(vm) || !DomainManager.upForPause(vm))
        throw QubesVMNotRunningError.forVm(vm.name);
      await this.pauseChecked(vm);
    });
  }

  private async pauseChecked(vm: Vm): Promise<void> {
    this.app.events.fire(vm, 'domain-pre-paused');
    // Pausing a paused domain changes nothing (libvirt answers it without an event).
    if (vm.powerState === 'Paused') return;
    await this.call(vm, 'pause', (vmm) => vmm.pause(vm.name));
    this.setState(vm, 'Paused', 'domain-paused');
  }

  /**
   * Upstream's is_running() for pause and suspend: a qube still starting is not running yet (upstream's
   * domain does not exist before its create), so it is refused before any event, not raced with the start.
   */
  private static upForPause(vm: Vm): boolean {
    return vm.isRunning && vm.powerState !== 'Transient';
  }

  async unpause(vm: Vm): Promise<void> {
    return this.logged('unpause', vm, async () => {
      if (vm.powerState !== 'Paused') throw QubesVMNotPausedError.forVm(vm.name);
      this.app.events.fire(vm, 'domain-pre-unpaused');
      await this.call(vm, 'unpause', (vmm) => vmm.unpause(vm.name));
      this.setState(vm, 'Running', 'domain-unpaused');
    });
  }

  async suspend(vm: Vm): Promise<void> {
    return this.logged('suspend', vm, async () => {
      if (vm.isAdminVm) throw new QubesVMError('Cannot suspend Dom0 fake domain!');
      if (!DomainManager.managed(vm)) throw QubesVMNotRunningError.forVm(vm.name);
      // Upstream: neither is_running() nor is_paused(); a paused domain is suspended too.
      if (!DomainManager.upForPause(vm)) throw QubesVMNotRunningError.forVm(vm.name);
      // A guest the hypervisor cannot suspend is paused, as upstream does when libvirt answers
      // OPERATION_UNSUPPORTED: Paused, announced as a Pause is, and Resume unpauses it.
      if (this.vmm(vm, 'suspend').capabilities().suspend.supported) {
        try {
          await this.call(vm, 'suspend', (vmm) => vmm.suspend(vm.name));
          this.setState(vm, 'Suspended', 'domain-paused');
          return;
        } catch (e) {
          if (!(e instanceof QubesNotImplementedError)) throw e;
        }
      }
      await this.pauseChecked(vm);
    });
  }

  /** Wakes a suspended domain; anything else is an unpause, with its state check (upstream's resume). */
  async resume(vm: Vm): Promise<void> {
    return this.logged('resume', vm, async () => {
      if (vm.powerState !== 'Suspended') return this.unpause(vm);
      await this.call(vm, 'resume', (vmm) => vmm.resume(vm.name));
      this.setState(vm, 'Running', 'domain-resumed');
    });
  }

  async currentState(vm: Vm) {
    const halted = { memKb: 0, memStaticMaxKb: 0, cputime: 0, powerState: vm.powerState };
    if (!DomainManager.managed(vm)) return { ...halted, powerState: 'Running' as PowerState };
    const vmm = this.backend.current;
    if (vm.powerState === 'Halted' || !vmm) return halted;
    const rt = await vmm.state(vm.name);
    const powerState = await this.believe(vm, rt);
    if (powerState === 'Halted') return { ...halted, powerState };
    return { memKb: rt.memoryKb, memStaticMaxKb: rt.memoryMaxKb, cputime: rt.cpuTimeNs, powerState };
  }

  async stats(): Promise<readonly DomainStats[]> {
    const vmm = this.backend.current;
    return vmm ? vmm.stats() : [];
  }

  async console(vm: Vm): Promise<string> {
    if (!DomainManager.managed(vm)) {
      throw new QubesNotImplementedError(`${vm.name} has no console: it is not a domain this daemon runs`);
    }
    if (!vm.isRunning) throw QubesVMNotRunningError.forVm(vm.name);
    const vmm = this.vmm(vm, 'reach the console of');
    const capability = vmm.capabilities().console;
    if (!vmm.consolePath || capability?.supported !== true) {
      const why = capability?.supported === false ? capability.reason : 'the backend has no console support';
      throw new QubesNotImplementedError(
        `Console of ${vm.name} is not available with backend ${this.backend.name}: ${why}`,
      );
    }
    const consolePath = vmm.consolePath.bind(vmm);
    return this.call(vm, 'reach the console of', () => consolePath(vm.name));
  }

  capabilities(): VmmCapabilities | null {
    return this.backend.current?.capabilities() ?? null;
  }

  /**
   * What upstream's domain-pre-start handlers refuse, announced as domain-start-failed: a qube whose
   * restore from a backup is under way (its restore tags it), and one a required device of which is
   * not exposed (this daemon discovers no devices, so a required assignment always stops the start).
   */
  private static preStartRefusal(vm: Vm): QubesException | undefined {
    if (vm.tags.has('backup-restore-in-progress'))
      return new QubesVMError('Restore of this domain in progress, cannot start');
    for (const devclass of vm.devices.classes()) {
      const required = vm.devices.list(devclass).find((a) => a.mode === 'required');
      if (!required) continue;
      return new QubesException(
        `${devclass.charAt(0).toUpperCase()}${devclass.slice(1).toLowerCase()} device ${deviceString(required)} not available`,
      );
    }
    return undefined;
  }

  /**
   * Reconciles the cached states with what the hypervisor reports, e.g. after (re)connecting. A
   * VM the daemon has as halted and the hypervisor does not run may have stopped while no daemon
   * watched (odysseyd died while it ran): its volumes are finished as its stop would have.
   */
  async syncStates(vmm: Vmm): Promise<void> {
    for (const vm of this.app.domains.list()) {
      if (!DomainManager.managed(vm)) continue;
      const rt = await vmm.state(vm.name).catch(() => null);
      if (!rt) continue;
      if (rt.state === 'Halted' && vm.powerState === 'Halted') await this.finishUnwatchedStop(vm);
      else if (rt.state === 'Halted') await this.markHalted(vm, 'unknown');
      else if (vm.powerState === 'Halted' && !this.unreleased.has(vm)) this.markRunning(vm, rt.xid, rt.state);
      else await this.believe(vm, rt);
    }
  }

  private async finishUnwatchedStop(vm: Vm): Promise<void> {
    try {
      if (await this.storage.stopLeftovers(vm))
        this.log('info', `${vm.name} stopped while no daemon watched: its volumes are finished`);
    } catch (e) {
      this.log('error', `could not finish the volumes of ${vm.name}: ${String(e)}`);
    }
  }

  /** Applies an event the backend reported on its own (guest poweroff, crash, pause from elsewhere). */
  async onVmmEvent(event: VmmEvent): Promise<void> {
    const vm = this.app.domains.byName(event.name);
    if (!vm || !DomainManager.managed(vm)) return;
    switch (event.type) {
      case 'started':
        if (vm.powerState === 'Halted' && !this.unreleased.has(vm)) {
          const rt = await this.backend.current?.state(vm.name).catch(() => null);
          this.markRunning(vm, rt?.xid ?? -1);
          this.app.events.fire(vm, 'domain-start', { start_guid: 'False' });
        }
        break;
      case 'stopped':
        await this.markHalted(vm, event.reason);
        break;
      case 'paused':
        if (vm.powerState === 'Running') this.setState(vm, 'Paused', 'domain-paused');
        break;
      case 'unpaused':
        if (vm.powerState === 'Paused') this.setState(vm, 'Running', 'domain-unpaused');
        break;
      case 'suspended':
        if (vm.powerState === 'Running') this.setState(vm, 'Suspended', 'domain-paused');
        break;
      case 'resumed':
        if (vm.powerState === 'Suspended') this.setState(vm, 'Running', 'domain-resumed');
        break;
    }
  }

  /**
   * Takes what the backend reported of a domain the daemon has as up: one it no longer runs
   * (stopped by another tool, or its event not here yet) is halted, its stop announced now, as
   * upstream's start handles a stop it has not announced before starting again; and among the
   * UNANNOUNCED states the backend's is the state. Returns the state then.
   */
  private async believe(vm: Vm, rt: DomainRuntime): Promise<PowerState> {
    if (vm.powerState === 'Halted' || vm.powerState === 'Transient') return vm.powerState;
    if (rt.state === 'Halted') await this.markHalted(vm, 'unknown');
    else if (UNANNOUNCED.has(vm.powerState) && UNANNOUNCED.has(rt.state)) vm.powerState = rt.state;
    return vm.powerState;
  }

  private async call<T>(vm: Vm, action: string, op: (vmm: Vmm) => Promise<T>): Promise<T> {
    const vmm = this.vmm(vm, action);
    try {
      return await op(vmm);
    } catch (e) {
      if (e instanceof VmmError && e.code === 'no-such-domain') throw QubesVMNotStartedError.forVm(vm.name);
      const why = `Cannot ${action} ${vm.name}: ${e instanceof Error ? e.message : String(e)}`;
      // What the backend cannot do at all (its capabilities say so) is not a failure of this VM.
      if (e instanceof VmmError && e.code === 'unsupported') throw new QubesNotImplementedError(why);
      throw new QubesVMError(why);
    }
  }

  private setState(
    vm: Vm,
    state: PowerState,
    event: 'domain-paused' | 'domain-unpaused' | 'domain-resumed',
  ): void {
    vm.powerState = state;
    this.app.events.fire(vm, event);
  }

  private markRunning(vm: Vm, xid: number, state: PowerState = 'Running'): void {
    vm.powerState = state;
    vm.xid = xid;
    vm.startTime = this.clock.now() / 1000;
    this.announceRuntimeReset(vm);
  }

  /** The run-time properties changed (a start gave them values, a stop took them): upstream's three resets. */
  private announceRuntimeReset(vm: Vm): void {
    this.app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
    this.app.events.fire(vm, 'property-reset:stubdom_xid', { name: 'stubdom_xid' });
    this.app.events.fire(vm, 'property-reset:start_time', { name: 'start_time' });
  }

  /**
   * The stop of one VM is handled once, whether our own kill/shutdown or the
   * backend's event gets there first; the other caller waits for the same work.
   */
  private markHalted(vm: Vm, reason: string): Promise<void> {
    const inProgress = this.halting.get(vm);
    if (inProgress) return inProgress;
    if (vm.powerState === 'Halted') return Promise.resolve();
    const done = this.halt(vm, reason).finally(() => this.halting.delete(vm));
    this.halting.set(vm, done);
    return done;
  }

  async forget(vm: Vm): Promise<void> {
    await this.backend.current?.undefine(vm.name).catch((e: unknown) => {
      if (!(e instanceof VmmError && e.code === 'no-such-domain'))
        this.log('warn', `the backend kept the domain of removed ${vm.name}: ${String(e)}`);
    });
  }

  /**
   * A stop in upstream's order: domain-stopped, whose handler stops the volumes and resets the
   * run-time properties, then domain-shutdown (no arguments), which clients take for Halted.
   */
  private async halt(vm: Vm, reason: string): Promise<void> {
    vm.powerState = 'Halted';
    vm.xid = -1;
    vm.startTime = null;
    this.app.events.fire(vm, 'domain-stopped');
    await this.network.stopped(vm);
    try {
      await this.storage.stop(vm);
    } catch (e) {
      this.log('error', `could not stop the volumes of ${vm.name}: ${String(e)}`);
    }
    this.announceRuntimeReset(vm);
    this.app.events.fire(vm, 'domain-shutdown');
    this.log('info', `${vm.name} halted (${reason})`);
    if (vm.klass === 'DispVM' && vm.bool('auto_cleanup') && this.app.domains.byName(vm.name) === vm) {
      try {
        this.app.removeVm(vm);
        await this.forget(vm);
        await this.storage.remove(vm);
        await this.vmFiles.removeVmDir(vm);
        await this.saver.save();
        this.log('info', `disposable ${vm.name} removed`);
      } catch (e) {
        this.log('warn', `could not remove disposable ${vm.name}: ${String(e)}`);
      }
    }
  }
}
