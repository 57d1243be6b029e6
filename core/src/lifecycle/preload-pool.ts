import { timerMs } from '../clock.js';
import type { Log } from '../log.js';
import { QubesException } from '../model/errors.js';
import type { EventMap, QubesEvent } from '../model/events.js';
import { featureTrue } from '../model/features.js';
import { missingPreloadServices } from '../model/preload-features.js';
import type { Vm } from '../model/vm.js';
import type { Saver } from '../persist/saver.js';
import { type DisposableDeps, newDisposable } from './new-disposable.js';
import type { Lifecycle } from './ports.js';
import {
  differingProperties,
  outdatedText,
  PRELOAD_OUTDATED_IGNORED,
  preloadOutdated,
} from './preload-outdated.js';
import { AP } from '../model/app-properties.js';
import { P } from '../model/vm-properties.js';

const LIST = 'preload-dispvm';
const MAX = 'preload-dispvm-max';
const IN_PROGRESS = 'preload-dispvm-in-progress';
const COMPLETED = 'preload-dispvm-completed';
/** Upstream's default preload-dispvm-delay, in seconds. */
const DEFAULT_DELAY = 3;
/** Upstream's refill delays after outdated preloads went, in seconds: a changed template property may come with more. */
const REFRESH_DELAY = { shutdown: 4, property: 30 } as const;
/** An outdated preload skipped by a request is removed this much later, not to slow that request down. */
const SKIPPED_DISCARD_DELAY = 2;

export interface PreloadDeps extends DisposableDeps {
  readonly lifecycle: Pick<Lifecycle, 'start' | 'pause' | 'unpause' | 'kill' | 'forget'>;
  readonly saver: Saver;
  readonly log: Log;
  /**
   * Calls `service` in a running qube from dom0 and resolves with its exit code and what it wrote
   * (stdout, then stderr: upstream's run_service_for_stdio with stderr=STDOUT). Absent when the
   * backend brought no vchan: its qubes run no qrexec, so there is nothing to wait for.
   */
  readonly runService?: (vm: Vm, service: string) => Promise<{ exitCode: number; output: Buffer }>;
}

const INTERRUPTED = 'preloading interrupted: the daemon is stopping';

/** What upstream waits for in a preload before it pauses it (with a GUI, qubes.WaitForSession too). */
const WAIT_SERVICE = 'qubes.WaitForRunningSystem';

/** Upstream's sanitize_stderr_for_log: at most 4096 bytes; letters, digits, punctuation and space kept, every other byte (newlines too) '_'. */
function sanitizeForLog(untrusted: Buffer): string {
  return [...untrusted.subarray(0, 4096)]
    .map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '_'))
    .join('');
}

/** Python's str() of a float: a whole number keeps its ".0". */
function pyFloat(n: number): string {
  return Number.isInteger(n) ? n.toFixed(1) : String(n);
}

/** Python's repr() of a feature value (a str). */
function pyRepr(s: string): string {
  return s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replaceAll("'", "\\'")}'`;
}

/**
 * Preloaded disposables as upstream 4.3 keeps them (qubes/vm/dispvm.py and
 * DVMTemplateMixin): a disposable template with `preload-dispvm-max` (or the
 * default disposable template, with dom0's global one) keeps that many
 * disposables created, started and paused ahead, named in its `preload-dispvm`
 * feature and hidden from GUI tools by `internal`. CreateDisposable and
 * `@dispvm` calls take the first one (unpaused, then an ordinary disposable)
 * and the gap is refilled in the background after `preload-dispvm-delay`.
 * What a preload went through survives a daemon restart in the qube's
 * features; which one is requested right now (upstream's preload_requested) is
 * runtime state, lost on restart as upstream loses it.
 */
export class PreloadPool {
  /** Taken but not yet used: such a qube is no longer in its template's list, and is still not paused. */
  private readonly requested = new Set<Vm>();
  /** Preloads waiting for their system to run: ends the wait, when one is taken or the daemon stops. */
  private readonly waits = new Map<Vm, (why: 'requested' | 'stopping') => void>();
  /** Preloads still starting: true once started (and paused unless requested), false if the start failed. */
  private readonly completions = new Map<Vm, Promise<boolean>>();
  /** Each template's fills run one after another, so two never count the same gap. */
  private readonly fills = new Map<Vm, Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Removals under way, waited for at stop so none is cut off halfway. */
  private readonly discards = new Set<Promise<void>>();
  /** Skipped outdated preloads waiting for their removal; a stop removes them at once. */
  private readonly laterDiscards = new Map<Vm, NodeJS.Timeout>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly deps: PreloadDeps) {
    this.unsubscribe = deps.app.events.subscribe((event) => this.onEvent(event));
  }

  /** Upstream's get_feat_preload_max: dom0's feature, when set, rules the default disposable template. */
  maxFor(template: Vm): number {
    const dom0 = this.deps.app.adminVm.features;
    return maxOf(this.isGlobal(template) && dom0.has(MAX) ? dom0.get(MAX) : template.features.get(MAX));
  }

  private isGlobal(template: Vm): boolean {
    return this.deps.app.props.tryGet(AP.default_dispvm) === template;
  }

  private static listOf(template: Vm): string[] {
    const value = template.features.get(LIST);
    return value ? value.split(' ') : [];
  }

  private static setList(template: Vm, names: readonly string[]): void {
    template.features.set(LIST, names.join(' '));
  }

  /** Upstream's remove_preload_from_list. */
  private removeFromList(template: Vm, names: readonly string[], reason: string): void {
    const old = PreloadPool.listOf(template);
    const kept = old.filter((n) => !names.includes(n));
    if (kept.length === old.length) return;
    this.deps.log(
      'info',
      `${template.name}: removing ${names.join(', ')} from the preloaded list because ${reason}`,
    );
    PreloadPool.setList(template, kept);
  }

  /** A disposable template now: one that may have preloads. */
  private static isActiveDvmTemplate(vm: Vm): boolean {
    return vm.props.has('template_for_dispvms') && vm.klass !== 'DispVM' && vm.bool('template_for_dispvms');
  }

  /**
   * Cleans what an earlier run left (upstream's DVMTemplateMixin domain-load
   * handler: names of absent qubes, preloads that never completed or were
   * requested but not used), then fills every template's pool.
   */
  async start(): Promise<void> {
    const { app } = this.deps;
    const templates = app.domains.list().filter((t) => PreloadPool.isActiveDvmTemplate(t));
    const discard: Vm[] = [];
    let listsChanged = false;
    for (const template of templates) {
      const absent = PreloadPool.listOf(template).filter((n) => !app.domains.byName(n));
      if (absent.length > 0) {
        this.removeFromList(template, absent, 'they are absent');
        listsChanged = true;
      }
      // A completed preload that is not running was stopped while no daemon watched it.
      const interrupted = app.domains
        .list()
        .filter(
          (d) =>
            d.klass === 'DispVM' &&
            d.template === template &&
            ((d.powerState === 'Halted' && featureTrue(d.features.get(COMPLETED))) ||
              featureTrue(d.features.get(IN_PROGRESS))),
        );
      this.removeFromList(
        template,
        interrupted.map((d) => d.name),
        'their progress was interrupted',
      );
      discard.push(...interrupted);
    }
    await Promise.all(discard.map((vm) => this.discard(vm)));
    // Only a change is saved: a daemon start with nothing to restore leaves qubes.xml alone.
    if (listsChanged || discard.length > 0) await this.deps.saver.save();
    for (const template of templates) {
      if (this.maxFor(template) > 0) this.schedule(template, 'autostart was requested', 0);
    }
  }

  /** Stops refilling and waits for the preloads under way, so none is left half started. */
  async stop(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    // A preload still waiting for its system would hold the stop up to its qrexec_timeout.
    for (const end of this.waits.values()) end('stopping');
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const [vm, t] of this.laterDiscards) {
      clearTimeout(t);
      this.discardWhenSettled(vm);
    }
    this.laterDiscards.clear();
    await Promise.allSettled([...this.fills.values()]);
    await Promise.allSettled([...this.discards]);
  }

  /**
   * admin.vm.CreateDisposable with the argument `preload`: fires
   * domain-preload-dispvm-start and returns once the pool is full, as
   * upstream's handler awaits the preloads it starts.
   */
  async refill(template: Vm, reason: string): Promise<void> {
    this.deps.app.events.fire(template, 'domain-preload-dispvm-start', { reason: reason });
    await this.queueFill(template, true);
  }

  /**
   * Takes a preloaded disposable of `template` for a caller (upstream's
   * request_preload and get_preload), unpaused and marked used; null when
   * there is none ready, and the caller makes a fresh one.
   */
  async take(template: Vm): Promise<Vm | null> {
    this.fillGap(template);
    const disp = await this.claimUpToDate(template);
    if (disp === null) return null;
    const name = disp.name;
    if (!featureTrue(disp.features.get(COMPLETED)) && !(await this.completion(disp))) {
      this.requested.delete(disp);
      this.deps.log('warn', `${name}: preloading did not complete, falling back to a new disposable`);
      return null;
    }
    if (disp.powerState === 'Paused') await this.deps.lifecycle.unpause(disp);
    await this.use(disp, template);
    return disp;
  }

  /**
   * The first listed preload still matching its template, marked requested; the outdated ones
   * before it leave the list and are removed shortly after (upstream's request_preload). When
   * only outdated ones were listed, the caller makes a fresh disposable and the gap is refilled.
   */
  private async claimUpToDate(template: Vm): Promise<Vm | null> {
    const { app, log } = this.deps;
    const names = PreloadPool.listOf(template);
    if (names.length === 0) return null;
    for (const name of names) {
      const disp = app.domains.byName(name);
      if (!disp) continue;
      const reason = await preloadOutdated(disp, template, (vm) => this.deps.storage.of(vm));
      // Another request may have taken or dropped it meanwhile.
      if (!PreloadPool.listOf(template).includes(name)) continue;
      if (reason === null) {
        log('info', `${name}: preloaded disposable requested`);
        disp.features.set(IN_PROGRESS, '1');
        this.removeFromList(template, [name], 'qube was requested');
        this.requested.add(disp);
        this.waits.get(disp)?.('requested');
        return disp;
      }
      const text = outdatedText(reason);
      log('warn', `${name}: discarding preloaded disposable as it has ${text}`);
      this.removeFromList(template, [name], `of outdated ${text}`);
      this.discardLater(disp);
    }
    log(
      'warn',
      `${template.name}: found only outdated preloaded qube(s), falling back to a normal disposable`,
    );
    this.fillGap(template);
    return null;
  }

  private discardLater(disp: Vm): void {
    if (this.laterDiscards.has(disp)) return;
    const timer = setTimeout(() => {
      this.laterDiscards.delete(disp);
      this.discardWhenSettled(disp);
    }, SKIPPED_DISCARD_DELAY * 1000);
    this.laterDiscards.set(disp, timer);
  }

  /** A preload still starting is removed once its start settles, never from under it. */
  private discardWhenSettled(disp: Vm): void {
    const pending = this.completions.get(disp);
    if (pending) void pending.then(() => this.discard(disp));
    else void this.discard(disp);
  }

  /**
   * Upstream's refresh_outdated_preload: listed preloads that no longer match their template
   * leave the list and are removed, and the pool refills after `delaySec`. Differing properties
   * are decided at once, so the list has changed when the property change is answered; the
   * volumes (a stat each) right after.
   */
  private refreshOutdated(template: Vm, delaySec: number): void {
    const listed = PreloadPool.listOf(template)
      .map((n) => this.deps.app.domains.byName(n))
      .filter((vm): vm is Vm => vm !== undefined && !this.requested.has(vm));
    const now = listed.filter((vm) => differingProperties(vm, template).length > 0);
    if (now.length > 0) this.dropOutdated(template, now, delaySec);
    const rest = listed.filter((vm) => !now.includes(vm));
    if (rest.length === 0) return;
    void (async () => {
      const volumesOf = (vm: Vm) => this.deps.storage.of(vm);
      const checked = await Promise.all(
        rest.map(async (vm) => (await preloadOutdated(vm, template, volumesOf)) && vm),
      );
      const later = checked.filter(
        (vm): vm is Vm => vm !== null && PreloadPool.listOf(template).includes(vm.name),
      );
      // One refill is announced per refresh, as upstream's.
      if (later.length > 0) this.dropOutdated(template, later, now.length > 0 ? null : delaySec);
    })().catch((e: unknown) =>
      this.deps.log('warn', `${template.name}: checking preloads failed: ${String(e)}`),
    );
  }

  private dropOutdated(template: Vm, outdated: readonly Vm[], delaySec: number | null): void {
    this.removeFromList(
      template,
      outdated.map((vm) => vm.name),
      'of outdated volume(s) or property(ies)',
    );
    for (const vm of outdated) this.discardWhenSettled(vm);
    if (delaySec !== null) this.schedule(template, 'of outdated volume(s)', delaySec, String(delaySec));
  }

  /** Waits for a preload still starting, at most 1.2 × its qrexec_timeout as upstream; false if it failed. */
  private async completion(disp: Vm): Promise<boolean> {
    const pending = this.completions.get(disp);
    if (!pending) return false;
    const seconds = Math.trunc((disp.props.tryGet(P.qrexec_timeout) ?? 60) * 1.2);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>(
      (resolve) => (timer = setTimeout(() => resolve(false), timerMs(seconds))),
    );
    const done = await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (!done) void pending.then(() => this.discard(disp));
    return done;
  }

  /** Upstream's use_preload: the qube becomes an ordinary disposable, and the gap is refilled. */
  private async use(disp: Vm, template: Vm): Promise<void> {
    const wasRequested = this.requested.delete(disp);
    if (!featureTrue(template.features.get('internal')) && disp.features.has('internal'))
      disp.features.remove('internal');
    if (wasRequested) {
      if (disp.features.has(IN_PROGRESS)) disp.features.remove(IN_PROGRESS);
    } else {
      this.deps.log('warn', `${disp.name}: preloaded qube used before it was requested`);
      this.removeFromList(template, [disp.name], 'qube was used without being requested');
      disp.features.set(IN_PROGRESS, '');
    }
    await this.deps.saver.save();
    const delay = this.delayOf(template);
    if (delay < 0 && PreloadPool.listOf(template).length > 0) return;
    this.deps.app.events.fire(template, 'domain-preload-dispvm-used', {
      dispvm: disp.name,
      delay: pyFloat(delay),
    });
    this.schedule(template, null, Math.abs(delay));
  }

  private delayOf(template: Vm): number {
    return Number.parseFloat(template.featureWithAdminVm('preload-dispvm-delay') || String(DEFAULT_DELAY));
  }

  /** Upstream's fill_preload_gap, run on every request: a refill after at least 5 s. */
  private fillGap(template: Vm): void {
    if (PreloadPool.listOf(template).length >= this.maxFor(template)) return;
    const delay = this.delayOf(template);
    if (delay < 0 && PreloadPool.listOf(template).length > 0) return;
    // Python's max(5, delay) keeps the int 5 unless the delay is larger.
    this.schedule(template, 'there is a gap', Math.max(5, delay), delay > 5 ? pyFloat(delay) : '5');
  }

  /** Fires domain-preload-dispvm-start (when `reason` is given) and fills after `delaySec`. */
  private schedule(template: Vm, reason: string | null, delaySec: number, delayArg?: string): void {
    if (this.closed) return;
    if (reason !== null) {
      const args: EventMap['domain-preload-dispvm-start'] = { reason };
      if (delayArg !== undefined) args.delay = delayArg;
      this.deps.app.events.fire(template, 'domain-preload-dispvm-start', args);
    }
    const run = (): void => {
      void this.queueFill(template, false).catch((e: unknown) =>
        this.deps.log('warn', `${template.name}: preloading failed: ${String(e)}`),
      );
    };
    if (delaySec === 0) return run();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, delaySec * 1000);
    this.timers.add(timer);
  }

  private queueFill(template: Vm, strict: boolean): Promise<void> {
    const previous = this.fills.get(template) ?? Promise.resolve();
    const next = previous.then(() => this.fill(template, strict));
    // What the queue keeps never rejects: only the caller of this fill hears of its failure.
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.fills.set(template, settled);
    void settled.then(() => {
      if (this.fills.get(template) === settled) this.fills.delete(template);
    });
    return next;
  }

  /**
   * Upstream's domain-preload-dispvm-* handler: drops the excess over the
   * maximum, then preloads the vacancies together. `strict` (an API call)
   * lets a failed preload fail the call; in the background it is logged.
   */
  private async fill(template: Vm, strict: boolean): Promise<void> {
    if (this.closed || !this.deps.app.domains.byName(template.name)) return;
    const missing = missingPreloadServices(template);
    if (missing.length > 0) {
      throw new QubesException(
        `Qube does not support the RPC(s) '${missing.join(', ')}' but tried to preload, check if template is outdated`,
      );
    }
    const max = this.maxFor(template);
    this.removeExcess(template, max, 'there may be absent qubes');
    const want = max - PreloadPool.listOf(template).length;
    if (want <= 0) return;
    if (!template.bool('template_for_dispvms')) {
      throw new QubesException(
        'Refusing to create disposable out of app qube which has template_for_dispvms=False',
      );
    }
    this.deps.log('info', `${template.name}: preloading ${want} qube(s)`);
    const results = await Promise.allSettled(Array.from({ length: want }, () => this.preloadOne(template)));
    const failed = results.find((r) => r.status === 'rejected');
    if (strict && failed) throw failed.reason;
  }

  /** Upstream's remove_preload_excess: the newest beyond the maximum go, and are killed. */
  private removeExcess(template: Vm, max: number, reason: string): void {
    const names = PreloadPool.listOf(template);
    const excess = names.slice(max);
    if (excess.length === 0) return;
    this.removeFromList(template, excess, reason);
    for (const name of excess) {
      const vm = this.deps.app.domains.byName(name);
      if (vm) void this.discard(vm);
    }
  }

  /** One preload: created and marked, started (its qrexec agent connected), paused unless already requested. */
  private async preloadOne(template: Vm): Promise<void> {
    let settle: (ok: boolean) => void = () => undefined;
    const completion = new Promise<boolean>((resolve) => (settle = resolve));
    const disp = await newDisposable(this.deps, template, (d) => {
      d.features.set(IN_PROGRESS, '1');
      PreloadPool.setList(template, [...PreloadPool.listOf(template), d.name]);
      d.features.set('internal', '1');
      this.completions.set(d, completion);
    });
    try {
      await this.deps.saver.save();
      await this.deps.lifecycle.start(disp);
      if (!this.requested.has(disp)) await this.waitOperational(disp);
      if (!this.requested.has(disp)) await this.deps.lifecycle.pause(disp);
      disp.features.set(COMPLETED, '1');
      if (!this.requested.has(disp)) {
        disp.features.set(IN_PROGRESS, '');
        await this.deps.saver.save();
      }
      this.deps.log('info', `${disp.name}: preloading completed`);
      settle(true);
    } catch (e) {
      this.deps.log('warn', `${disp.name}: preloading failed: ${e instanceof Error ? e.message : String(e)}`);
      this.removeFromList(template, [disp.name], 'its preloading failed');
      await this.discard(disp);
      settle(false);
      throw e;
    } finally {
      this.completions.delete(disp);
    }
  }

  /**
   * Upstream's wait_operational_preload: a preload is paused only once its system runs, so a
   * taken one answers a call at once. Bounded by the qube's qrexec_timeout; a request for the
   * qube ends the wait (it is not paused then), and the call's result no longer matters (upstream
   * cancels the call; here the service runs on in the guest until it returns).
   */
  private async waitOperational(disp: Vm): Promise<void> {
    const { runService, log } = this.deps;
    if (!runService) return;
    if (this.closed) throw new QubesException(INTERRUPTED);
    const seconds = disp.props.tryGet(P.qrexec_timeout) ?? 60;
    log('info', `${disp.name}: preload startup waiting '${WAIT_SERVICE}' with '${seconds}' seconds timeout`);
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<'requested' | 'stopping'>((resolve) => this.waits.set(disp, resolve));
    const timeout = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), timerMs(seconds))),
    );
    const call = runService(disp, WAIT_SERVICE);
    call.catch(() => undefined);
    try {
      const outcome = await Promise.race([call, ended, timeout]);
      if (outcome === 'requested') return;
      // Removed as any preload interrupted halfway, rather than kept unverified.
      if (outcome === 'stopping') throw new QubesException(INTERRUPTED);
      if (outcome === 'timeout') {
        throw new QubesException(
          `Timed out call to '${WAIT_SERVICE}' after '${seconds}' seconds during preload startup. ` +
            `To debug, run the following on a new disposable of '${disp.template?.name ?? ''}': systemd-analyze blame`,
        );
      }
      if (outcome.exitCode !== 0) {
        throw new QubesException(
          `Error on call to '${WAIT_SERVICE}' during preload startup: ${sanitizeForLog(outcome.output)}`,
        );
      }
      log('info', `${disp.name}: preload startup completed '${WAIT_SERVICE}'`);
    } finally {
      clearTimeout(timer);
      this.waits.delete(disp);
    }
  }

  /** Upstream's cleanup(force=True): killed, and removed even if it never ran. */
  private discard(disp: Vm): Promise<void> {
    const done = this.removeDisposable(disp).finally(() => this.discards.delete(done));
    this.discards.add(done);
    return done;
  }

  private async removeDisposable(disp: Vm): Promise<void> {
    const { app, lifecycle, storage, vmFiles, saver, log } = this.deps;
    try {
      if (disp.powerState !== 'Halted') await lifecycle.kill(disp);
      if (app.domains.byName(disp.name) !== disp) return;
      app.removeVm(disp);
      await lifecycle.forget(disp);
      await storage.remove(disp);
      await vmFiles.removeVmDir(disp);
      await saver.save();
    } catch (e) {
      log('warn', `could not remove preloaded disposable ${disp.name}: ${String(e)}`);
    }
  }

  private onEvent(event: QubesEvent): void {
    const vm = event.subject;
    if (this.closed) return;
    if (!vm) {
      if (/^property-(?:set|reset):default_dispvm$/.test(event.name))
        this.onDefaultDispvmChanged((event.args as { oldvalue?: string }).oldvalue);
      return;
    }
    const template = vm.klass === 'DispVM' ? vm.template : null;
    switch (event.name) {
      case 'domain-unpaused':
        // A preload unpaused by anyone but take() counts as used, as upstream's domain-unpaused handler.
        if (template && !this.requested.has(vm) && PreloadPool.listOf(template).includes(vm.name)) {
          void this.use(vm, template).catch((e: unknown) => this.deps.log('warn', String(e)));
        }
        return;
      case 'domain-shutdown':
        // A preload that stopped (crashed, killed) leaves the list; the next request fills the gap.
        if (template) {
          this.requested.delete(vm);
          this.removeFromList(template, [vm.name], 'automatic cleanup was called');
        }
        // What a qube wrote while it ran is committed now: snapshots of it are outdated.
        for (const t of this.dvmTemplatesSharingDisksOf(vm)) this.refreshOutdated(t, REFRESH_DELAY.shutdown);
        return;
      case `domain-feature-set:${MAX}`:
        this.onMaxChanged(vm, event.args);
        return;
      case `domain-feature-delete:${MAX}`:
        this.onMaxChanged(vm, undefined);
        return;
    }
    const changed = /^property-(?:set|reset):(.*)$/.exec(event.name)?.[1];
    if (
      changed !== undefined &&
      !PRELOAD_OUTDATED_IGNORED.has(changed) &&
      PreloadPool.isActiveDvmTemplate(vm)
    )
      this.refreshOutdated(vm, REFRESH_DELAY.property);
  }

  /** The disposable templates whose preloads snapshot `vm`'s volumes: itself, or a template's app qubes. */
  private dvmTemplatesSharingDisksOf(vm: Vm): Vm[] {
    if (PreloadPool.isActiveDvmTemplate(vm)) return [vm];
    if (vm.klass !== 'TemplateVM') return [];
    return this.deps.app.domains
      .list()
      .filter((d) => d.template === vm && PreloadPool.isActiveDvmTemplate(d));
  }

  /**
   * Upstream's on_property_set_default_dispvm: with a global maximum on dom0, the template that
   * stops or starts following it refills or offloads to its own maximum, or to the global one.
   */
  private onDefaultDispvmChanged(oldName: string | undefined): void {
    const dom0 = this.deps.app.adminVm.features;
    if (!dom0.has(MAX)) return;
    const now = (this.deps.app.props.tryGet(AP.default_dispvm) as Vm | null | undefined) ?? undefined;
    const old = oldName === undefined ? undefined : this.deps.app.domains.byName(oldName);
    if (now === old) return;
    const global = maxOf(dom0.get(MAX));
    for (const [template, reason] of [
      [old, 'it was the default_dispvm'],
      [now, 'it became the default_dispvm'],
    ] as const) {
      if (
        template &&
        PreloadPool.isActiveDvmTemplate(template) &&
        maxOf(template.features.get(MAX)) !== global
      )
        this.schedule(template, reason, 0);
    }
  }

  private onMaxChanged(vm: Vm, set: EventMap[`domain-feature-set:${string}`] | undefined): void {
    const deleted = set === undefined;
    if (!deleted && set.value === set.oldvalue) return;
    const what = deleted ? 'was deleted' : `was set to ${pyRepr(set.value)}`;
    if (vm.isAdminVm) {
      const target = this.deps.app.props.tryGet(AP.default_dispvm);
      if (target) this.schedule(target, `global feature ${what}`, 0);
      return;
    }
    if (!PreloadPool.isActiveDvmTemplate(vm)) return;
    if (this.isGlobal(vm) && this.deps.app.adminVm.features.has(MAX)) return;
    if (deleted) this.removeExcess(vm, 0, 'local feature was deleted');
    else this.schedule(vm, `local feature ${what}`, 0);
  }
}

/** A preload-dispvm-max value as a number. dom0's is checked only while a default_dispvm is set: one that is no number means none. */
function maxOf(value: string | undefined): number {
  const max = Number.parseInt(value || '0', 10);
  return Number.isNaN(max) ? 0 : max;
}
