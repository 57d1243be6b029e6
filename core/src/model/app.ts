import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { AP, APP_PROPERTIES } from './app-properties.js';
import { providedPorts } from './devices.js';
import { DomainCollection } from './domains.js';
import { QubesPropertyValueError, QubesVMAlreadyExistsError, QubesVMInUseError } from './errors.js';
import { EventBus } from './events.js';
import { installPropertyTags } from './property-tags.js';
import { installCreatorTags } from './creator-tags.js';
import { installMeminfoWriterCompat } from './service-features.js';
import { installServiceVmFeature } from './servicevm-feature.js';
import type { Label } from './labels.js';
import { LabelRegistry } from './labels.js';
import { PropertyStore, sortDefs } from './property.js';
import type { PropertyHolder } from './property.js';
import { Vm } from './vm.js';
import type { VmClassName } from './vm-classes.js';

export interface HostInfo {
  readonly memoryMiB: number;
  readonly cpus: number;
}

/** What the model needs to know of storage pools (the storage layer provides it). */
export interface PoolDirectory {
  has(name: string): boolean;
  names(): string[];
  /** Upstream's default_pool default: a pool named `default`, else the one at the state dir. */
  defaultPoolName(): string | undefined;
}

export interface NewVm {
  readonly name: string;
  /** Absent for a disposable of a template whose label was reset: upstream's has none either. */
  readonly label?: Label;
  readonly qid?: number;
  readonly uuid?: string;
}

/**
 * The Qubes "app": global properties, labels, and every domain. It is the root
 * of the model; the API, persistence and lifecycle all work through it.
 */
export class App implements PropertyHolder {
  readonly events = new EventBus();
  readonly props: PropertyStore<App>;
  readonly domains = new DomainCollection();
  labels = LabelRegistry.withDefaults();
  readonly holderName = 'Qubes';
  readonly eventSubject = null;
  readonly instanceDescription = 'Qubes instance';

  constructor(
    readonly stateDir: string,
    readonly host: HostInfo,
    public pools: PoolDirectory,
  ) {
    this.props = new PropertyStore<App>(this, sortDefs(APP_PROPERTIES));
    installPropertyTags(this);
    installServiceVmFeature(this);
    installMeminfoWriterCompat(this);
    installCreatorTags(this);
  }

  /** Directory of installed kernels (the linux-kernel pool's dir_path). */
  get kernelsDir(): string {
    return join(this.stateDir, 'vm-kernels');
  }

  get adminVm(): Vm {
    return this.domains.get('dom0');
  }

  /** Upstream's validate_kernel: a kernel is a directory holding vmlinuz. */
  checkKernel(kernel: string): void {
    const dir = join(this.kernelsDir, kernel);
    if (!existsSync(dir)) throw new QubesPropertyValueError(`Kernel '${kernel}' not installed`);
    if (!existsSync(join(dir, 'vmlinuz'))) {
      throw new QubesPropertyValueError(`Kernel '${kernel}' not properly installed: missing 'vmlinuz' file`);
    }
  }

  /** dom0, as a fresh system has it. */
  createAdminVm(label: Label): Vm {
    const vm = new Vm(this, 'AdminVM');
    vm.props.init('label', label);
    this.domains.add(vm);
    return vm;
  }

  /**
   * Adds a domain without events: loading state, and the first step of
   * creation (which announces it afterwards with announceNewVm).
   */
  addVm(klass: VmClassName, spec: NewVm): Vm {
    if (this.domains.byName(spec.name))
      throw new QubesVMAlreadyExistsError(`Qube already exists: ${spec.name}`);
    const vm = new Vm(this, klass);
    vm.props.init('name', spec.name);
    vm.props.init('qid', spec.qid ?? this.domains.nextQid());
    vm.props.init('uuid', spec.uuid ?? randomUUID());
    if (spec.label) vm.props.init('label', spec.label);
    this.domains.add(vm);
    return vm;
  }

  /**
   * Adds a domain being created (not loaded), with what upstream's QubesVM constructor gives a
   * new qube: its updates check off (feature check-updates False) while the global
   * check_updates_vm is False. A RemoteVM is no QubesVM.
   */
  addNewVm(klass: VmClassName, spec: NewVm): Vm {
    const vm = this.addVm(klass, spec);
    if (klass !== 'RemoteVM' && this.props.get(AP.check_updates_vm) === false)
      vm.features.init('check-updates', '');
    return vm;
  }

  announceNewVm(vm: Vm): void {
    this.events.fire(null, 'domain-add', { vm: vm.name });
  }

  /** Why a domain cannot be removed, or null: other domains or global settings still point at it. */
  usersOf(vm: Vm): string[] {
    const users: string[] = [];
    for (const [name, value] of this.props.explicit()) {
      if (value === vm) users.push(`global property ${name}`);
    }
    for (const other of this.domains.list()) {
      if (other === vm) continue;
      for (const [name, value] of other.props.explicit()) {
        if (value === vm) users.push(`${other.name}.${name}`);
      }
    }
    return users;
  }

  removeVm(vm: Vm): void {
    const users = this.usersOf(vm);
    if (users.length > 0) {
      throw new QubesVMInUseError(
        `Domain is in use: '${vm.name}';  see 'journalctl -u qubesd -e' in dom0 for details`,
      );
    }
    const ports = providedPorts(vm);
    if (ports.length > 0) {
      throw new QubesVMInUseError(`VM has devices assigned to other VMs: ${ports.join(', ')}`);
    }
    this.events.fire(null, 'domain-pre-delete', { vm: vm.name });
    this.domains.delete(vm);
    this.events.fire(null, 'domain-delete', { vm: vm.name });
  }
}
