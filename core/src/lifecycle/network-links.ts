import type { NetworkLink, Vmm } from '@odyssey/hal';
import type { App } from '../model/app.js';
import { byVmOrder } from '../model/domains.js';
import { QubesVMInUseError, QubesVMNotStartedError } from '../model/errors.js';
import type { EventOf } from '../model/events.js';
import type { Vm } from '../model/vm.js';
import type { Log } from '../log.js';
import { P } from '../model/vm-properties.js';

const running = (vm: Vm | null): vm is Vm => vm !== null && vm.isRunning;

/** The link between a qube and `netvm` (its own netvm unless given), or none when it has no address. */
export function linkOf(vm: Vm, netvm: Vm | null = vm.netvm): NetworkLink | undefined {
  const ip = vm.props.tryGet(P.ip);
  if (!netvm || !ip) return undefined;
  return { frontendDomain: vm.name, backendDomain: netvm.name, mac: vm.props.get(P.mac), ip };
}

/** The qubes whose netvm is `netvm` (upstream's connected_vms), by name as upstream iterates domains. */
export function connectedVms(app: App, netvm: Vm): Vm[] {
  return app.domains
    .list()
    .filter((vm) => vm.netvm === netvm)
    .sort(byVmOrder);
}

/**
 * Keeps the backend side of each running qube's link in its running netvm, as upstream's
 * mix/net.py keeps vifs: attached when the client starts and when its netvm (re)starts, taken out
 * when the client stops, moved when a running qube's netvm changes; and a netvm still serving
 * running qubes is not shut down unless forced. Backend calls run one at a time in the order
 * asked; `settled()` waits for those under way.
 */
export class NetworkLinks {
  private queue: Promise<void> = Promise.resolve();
  /** The link a running qube had when a change of its netvm began (pre-set), to take out after it. */
  private readonly before = new Map<Vm, NetworkLink | undefined>();

  constructor(
    private readonly app: App,
    private readonly vmm: () => Vmm | undefined,
    private readonly log: Log,
  ) {
    app.events.onPre('domain-pre-shutdown', (e) => this.refuseShutdownInUse(e));
    app.events.onPre('property-pre-set:netvm', (e) => this.beforeNetvmChange(e));
    app.events.onPre('property-pre-reset:netvm', (e) => this.beforeNetvmChange(e));
    app.events.subscribe((e) => {
      if (e.name === 'property-set:netvm' || e.name === 'property-reset:netvm') this.afterNetvmChange(e);
    });
  }

  /** Resolves once every link change asked for so far has been made (or has failed and been logged). */
  settled(): Promise<void> {
    return this.queue;
  }

  /** A qube just started: its netvm gets its side; a netvm just started: its running clients get theirs. */
  async started(vm: Vm): Promise<void> {
    const netvm = vm.netvm;
    const own = linkOf(vm);
    if (own && running(netvm)) await this.run(() => this.attach(own));
    if (!vm.bool('provides_network')) return;
    for (const client of connectedVms(this.app, vm)) {
      const link = linkOf(client, vm);
      if (link && client.powerState === 'Running') await this.run(() => this.attach(link));
    }
  }

  /** A qube stopped: its netvm no longer carries it; a netvm stopped: its clients' links are gone. */
  async stopped(vm: Vm): Promise<void> {
    const own = linkOf(vm);
    if (own && running(vm.netvm)) await this.run(() => this.detach(own));
    if (!vm.bool('provides_network')) return;
    for (const client of connectedVms(this.app, vm)) {
      const link = linkOf(client, vm);
      if (link && running(client)) await this.run(() => this.detach(link));
    }
  }

  /** Upstream's on_domain_pre_shutdown of a netvm. */
  private refuseShutdownInUse(e: EventOf<'domain-pre-shutdown'>): void {
    const vm = e.subject;
    if (!vm || !vm.bool('provides_network')) return;
    if (e.args.force === 'True') return;
    const users = connectedVms(this.app, vm).filter((c) => running(c) && !c.bool('is_preload'));
    if (users.length === 0) return;
    throw new QubesVMInUseError(
      `There are other VMs connected to this VM: ${users.map((c) => c.name).join(', ')}`,
    );
  }

  /**
   * Upstream's property-pre-set:netvm: a running qube cannot be moved to a stopped netvm; the
   * link it has now is noted, to take out once the change is made.
   */
  private beforeNetvmChange(e: EventOf<'property-pre-set:netvm' | 'property-pre-reset:netvm'>): void {
    const vm = e.subject;
    if (!vm || !running(vm)) return;
    if ('newvalue' in e.args) {
      const name = e.args.newvalue;
      const target = name ? this.app.domains.byName(name) : undefined;
      if (target && !target.isRunning) {
        throw new QubesVMNotStartedError(`Cannot dynamically attach to stopped qube ${target.name}`);
      }
    }
    this.before.set(vm, running(vm.netvm) ? linkOf(vm) : undefined);
  }

  /** Upstream's property-set:netvm: the old netvm's side out, the new one's in, net-domain-connect. */
  private afterNetvmChange(e: EventOf<`property-set:${string}` | `property-reset:${string}`>): void {
    const vm = e.subject;
    if (!vm || !this.before.has(vm)) return;
    const old = this.before.get(vm);
    this.before.delete(vm);
    const netvm = vm.netvm;
    const next = running(netvm) ? linkOf(vm) : undefined;
    if (old?.backendDomain === next?.backendDomain && old?.ip === next?.ip) return;
    if (old) this.enqueue(() => this.detach(old));
    if (next) this.enqueue(() => this.attach(next));
    if (netvm && running(vm)) this.app.events.fire(netvm, 'net-domain-connect', { vm: vm.name });
  }

  private async attach(link: NetworkLink): Promise<void> {
    const vmm = this.vmm();
    if (!vmm?.attachLink || vmm.capabilities().network?.supported !== true) return;
    await vmm.attachLink(link);
    this.log('info', `network: ${link.frontendDomain} attached to ${link.backendDomain}`);
  }

  private async detach(link: NetworkLink): Promise<void> {
    const vmm = this.vmm();
    if (!vmm?.detachLink || vmm.capabilities().network?.supported !== true) return;
    await vmm.detachLink(link);
    this.log('info', `network: ${link.frontendDomain} detached from ${link.backendDomain}`);
  }

  /** Queues a link change; a failure is logged, as upstream logs "Cannot attach network" and goes on. */
  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((e: unknown) => {
      this.log('warn', `network: ${e instanceof Error ? e.message : String(e)}`);
    });
  }

  private run(work: () => Promise<void>): Promise<void> {
    this.enqueue(work);
    return this.queue;
  }
}
