import { QubesVMNotFoundError } from './errors.js';
import type { Vm } from './vm.js';

/** Upstream's order of qubes: dom0 first (its AdminVM sorts before all), then by name as Python compares strings. */
export function byVmOrder(a: Vm, b: Vm): number {
  if (a.isAdminVm !== b.isAdminVm) return a.isAdminVm ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** All domains, by name, in insertion order (which is the order qubes.xml keeps). */
export class DomainCollection {
  private readonly byNameMap = new Map<string, Vm>();

  add(vm: Vm): void {
    this.byNameMap.set(vm.name, vm);
  }

  delete(vm: Vm): void {
    this.byNameMap.delete(vm.name);
  }

  byName(name: string): Vm | undefined {
    return this.byNameMap.get(name);
  }

  byUuid(uuid: string): Vm | undefined {
    for (const vm of this.byNameMap.values()) if (vm.uuid === uuid) return vm;
    return undefined;
  }

  get(name: string): Vm {
    const vm = this.byNameMap.get(name);
    if (!vm) throw new QubesVMNotFoundError(name);
    return vm;
  }

  list(): Vm[] {
    return [...this.byNameMap.values()];
  }

  /** admin.vm.List's order: dom0 first (upstream's AdminVM sorts before all), then by name as Python compares strings. */
  sorted(): Vm[] {
    return this.list().sort(byVmOrder);
  }

  get size(): number {
    return this.byNameMap.size;
  }

  /** Lowest unused qid from 1 (0 is dom0), as upstream allocates them. */
  nextQid(): number {
    const used = new Set(this.list().map((vm) => vm.qid));
    for (let qid = 1; qid <= 10000; qid++) if (!used.has(qid)) return qid;
    throw new RangeError('no free qid');
  }
}
