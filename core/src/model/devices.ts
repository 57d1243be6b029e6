import { DeviceAlreadyAssigned, DeviceNotAssigned, QubesValueError, pyRepr } from './errors.js';
import type { EventMap } from './events.js';
import type { Vm } from './vm.js';

/**
 * Persistent device assignments (upstream's DeviceCollection minus the live
 * side): which device of which backend domain a VM gets automatically. The
 * daemon discovers no devices and attaches none, so this is configuration
 * only; it still drives virt_mode's default, start and removal checks.
 */

/** The device classes core serves, in the order of upstream's `qubes.devices` entry points. */
export const DEVICE_CLASSES = ['pci', 'block'] as const;
export type DeviceClass = (typeof DEVICE_CLASSES)[number];

/** Modes an assignment can have; `manual` exists only for one-off attachments. */
export const ASSIGNMENT_MODES = ['required', 'ask-to-attach', 'auto-attach'] as const;
export type AssignmentMode = (typeof ASSIGNMENT_MODES)[number];

export function isAssignmentMode(s: string): s is AssignmentMode {
  return (ASSIGNMENT_MODES as readonly string[]).includes(s);
}

/** A device as upstream's VirtualDevice names it: backend, port, and device identity or `*`. */
export interface DeviceRef {
  readonly backend: Vm;
  readonly portId: string;
  readonly deviceId: string;
}

export interface DeviceAssignment extends DeviceRef {
  readonly mode: AssignmentMode;
  /** In the order given, as upstream keeps its options dict. */
  readonly options: readonly (readonly [string, string])[];
}

/** str(VirtualDevice): `backend:port:device`, as messages and event arguments show a device. */
export function deviceString(d: DeviceRef): string {
  return `${d.backend.name}:${d.portId}:${d.deviceId}`;
}

const sameDevice = (a: DeviceRef, b: DeviceRef): boolean =>
  a.backend === b.backend && a.portId === b.portId && a.deviceId === b.deviceId;

/** str() of a Python dict of strings, which is how upstream's events carry `options`. */
function optionsRepr(options: DeviceAssignment['options']): string {
  return `{${options.map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;
}

/**
 * One VM's assignments, per class in the order they were made. Classes other
 * than the served ones (e.g. usb from a full Qubes install's qubes.xml) are
 * kept so that saving does not drop them.
 */
export class DeviceAssignments {
  private readonly byClass = new Map<string, DeviceAssignment[]>();

  constructor(private readonly vm: Vm) {}

  classes(): string[] {
    return [...this.byClass.keys()].filter((c) => this.list(c).length > 0);
  }

  list(devclass: string): readonly DeviceAssignment[] {
    return this.byClass.get(devclass) ?? [];
  }

  find(devclass: string, device: DeviceRef): DeviceAssignment | undefined {
    return this.list(devclass).find((a) => sameDevice(a, device));
  }

  /** Loading qubes.xml: no events. */
  init(devclass: string, assignment: DeviceAssignment): void {
    this.byClass.set(devclass, [...this.list(devclass), assignment]);
  }

  checkNotAssigned(devclass: string, device: DeviceRef): void {
    if (this.find(devclass, device)) {
      throw new DeviceAlreadyAssigned(
        `${devclass} device ${deviceString(device)} already assigned to ${this.vm.name}`,
      );
    }
  }

  assign(devclass: string, assignment: DeviceAssignment): void {
    this.checkNotAssigned(devclass, assignment);
    const args = this.deviceArgs(assignment, assignment.options);
    this.vm.events.fire(this.vm, `device-pre-assign:${devclass}`, args);
    this.init(devclass, assignment);
    this.vm.events.fire(this.vm, `device-assign:${devclass}`, args);
  }

  unassign(devclass: string, device: DeviceRef): void {
    if (!this.find(devclass, device)) {
      throw new DeviceNotAssigned(
        `${devclass} device ${deviceString(device)} not assigned to ${this.vm.name}`,
      );
    }
    this.byClass.set(
      devclass,
      this.list(devclass).filter((a) => !sameDevice(a, device)),
    );
    this.vm.events.fire(this.vm, `device-unassign:${devclass}`, { device: deviceString(device) });
  }

  /** A new mode for an assignment, keeping its options. */
  setMode(devclass: string, device: DeviceRef, mode: AssignmentMode): void {
    const current = this.find(devclass, device);
    if (!current) throw new QubesValueError(`Device ${deviceString(device)} not assigned to ${this.vm.name}`);
    if (current.mode === mode) return;
    this.vm.events.fire(this.vm, `device-pre-assign:${devclass}`, this.deviceArgs(device, current.options));
    this.byClass.set(
      devclass,
      this.list(devclass).map((a) => (a === current ? { ...a, mode } : a)),
    );
    this.vm.events.fire(this.vm, `device-assignment-changed:${devclass}`, { device: deviceString(device) });
  }

  private deviceArgs(
    device: DeviceRef,
    options: DeviceAssignment['options'],
  ): EventMap[`device-assign:${string}`] {
    return { device: deviceString(device), options: optionsRepr(options) };
  }
}

/**
 * Ports of devices `backend` provides to other domains under assignments;
 * upstream refuses to remove such a domain.
 */
export function providedPorts(backend: Vm): string[] {
  const ports: string[] = [];
  for (const vm of backend.app.domains.list()) {
    if (vm === backend || vm.klass === 'RemoteVM') continue;
    for (const devclass of vm.devices.classes()) {
      for (const a of vm.devices.list(devclass)) if (a.backend === backend) ports.push(a.portId);
    }
  }
  return ports;
}
