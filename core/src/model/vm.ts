import { join } from 'node:path';

import type { PowerState } from '@odyssey/hal';
import type { App } from './app.js';
import type { FirewallRule, FirewallState } from './firewall.js';
import { DEFAULT_FIREWALL } from './firewall.js';
import { pyRepr, QubesVMError } from './errors.js';
import { DeviceAssignments } from './devices.js';
import { Features } from './features.js';
import type { EventBus } from './events.js';
import type { Label } from './labels.js';
import { PropertyStore } from './property.js';
import type { PropertyHolder } from './property.js';
import { Tags } from './tags.js';
import { VM_CLASSES } from './vm-classes.js';
import { P } from './vm-properties.js';
import type { VmClassName } from './vm-classes.js';

/**
 * One domain: its properties, features, tags, device assignments, firewall,
 * and its runtime state as last reported by the Vmm.
 */
export class Vm implements PropertyHolder {
  readonly props: PropertyStore<Vm>;
  readonly features: Features;
  readonly tags: Tags;
  readonly devices: DeviceAssignments;
  /** Read the rules through `firewall`; only a netvm's QubesDB, which cannot refuse, looks here. */
  firewallState: FirewallState = { rules: DEFAULT_FIREWALL };
  powerState: PowerState = 'Halted';
  /** Hypervisor domain id while running. */
  xid = -1;
  /** Unix time (s) of the last start, while running. */
  startTime: number | null = null;

  constructor(
    readonly app: App,
    readonly klass: VmClassName,
  ) {
    this.props = new PropertyStore<Vm>(this, VM_CLASSES[klass].props);
    this.features = new Features(this, app.events);
    this.tags = new Tags(this, app.events);
    this.devices = new DeviceAssignments(this);
  }

  /**
   * The rules. A qube whose firewall.xml could not be loaded has none to give (the defaults would
   * open its network): reading them refuses, saying why, until new rules are set.
   */
  get firewall(): readonly FirewallRule[] {
    const state = this.firewallState;
    if ('rules' in state) return state.rules;
    throw new QubesVMError(`firewall.xml of ${pyRepr(this.name)} could not be loaded: ${state.unloadable}`);
  }

  set firewall(rules: readonly FirewallRule[]) {
    this.firewallState = { rules };
  }

  /** Refuses as reading the rules does, where they are handed on rather than read here (a start, a Reload). */
  checkFirewall(): void {
    void this.firewall;
  }

  get events(): EventBus {
    return this.app.events;
  }

  get eventSubject(): Vm {
    return this;
  }

  get holderName(): string {
    return this.name;
  }

  get instanceDescription(): string {
    return `${this.klass} instance`;
  }

  get name(): string {
    return this.props.get(P.name);
  }

  get qid(): number {
    return this.props.get(P.qid);
  }

  get uuid(): string {
    return this.props.get(P.uuid);
  }

  /** None once admin.vm.property.Reset took it (the property has no default). */
  get label(): Label | undefined {
    return this.props.tryGet(P.label) ?? undefined;
  }

  get isAdminVm(): boolean {
    return this.klass === 'AdminVM';
  }

  /** The VM this one is based on (AppVM, DispVM), or null. */
  get template(): Vm | null {
    const template = VM_CLASSES[this.klass].template;
    return template ? (this.props.tryGet(template) ?? null) : null;
  }

  get netvm(): Vm | null {
    if (!this.props.has('netvm')) return null;
    return this.props.tryGet(P.netvm) ?? null;
  }

  /** Per-VM directory, as upstream lays them out under the state dir. */
  get dirPath(): string {
    return join(this.app.stateDir, this.klass === 'TemplateVM' ? 'vm-templates' : 'appvms', this.name);
  }

  /** getattr(vm, prop, False): a property this class lacks reads as false. */
  bool(prop: string): boolean {
    return this.props.has(prop) && this.props.tryGet(prop) === true;
  }

  /** A feature from this VM, else from its template chain (upstream's check_with_template). */
  featureWithTemplate(name: string): string | undefined {
    return this.features.get(name) ?? this.template?.featureWithTemplate(name);
  }

  featureWithNetvm(name: string, seen = new Set<Vm>()): string | undefined {
    if (seen.has(this)) return undefined;
    seen.add(this);
    return this.features.get(name) ?? this.netvm?.featureWithNetvm(name, seen);
  }

  featureWithAdminVm(name: string): string | undefined {
    return this.features.get(name) ?? this.app.adminVm.features.get(name);
  }

  featureWithTemplateAndAdminVm(name: string): string | undefined {
    return this.featureWithTemplate(name) ?? this.app.adminVm.features.get(name);
  }

  /** The state clients are told: dom0 and remote domains always run (upstream's classes say so); nothing here powers them. */
  get shownPowerState(): PowerState {
    return this.klass === 'AdminVM' || this.klass === 'RemoteVM' ? 'Running' : this.powerState;
  }

  /**
   * Upstream's is_running(): the hypervisor has the domain active, whatever it is doing (paused,
   * suspended, still shutting down, crashed and not yet destroyed). Only Halted is not, and NA,
   * a domain the hypervisor does not have; dom0 and remote domains always are.
   */
  get isRunning(): boolean {
    const state = this.shownPowerState;
    return state !== 'Halted' && state !== 'NA';
  }

  /** Whether the VM is using any network: it has a netvm or provides one. */
  get isNetworked(): boolean {
    return this.bool('provides_network') || this.netvm !== null;
  }

  toString(): string {
    return this.name;
  }
}
