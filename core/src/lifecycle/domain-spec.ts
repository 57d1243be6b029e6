import type { DomainSpec, VirtMode } from '@odyssey/hal';
import type { Vm } from '../model/vm.js';
import type { StartedVolumes } from '../storage/vm-storage.js';
import { linkOf } from './network-links.js';

/** Derives what a backend needs to run the VM from its properties and its started volumes. */
export function buildDomainSpec(vm: Vm, disks: StartedVolumes): DomainSpec {
  const link = linkOf(vm);
  // A qube that provides network and has none of its own is the edge (sys-net): it gets the uplink.
  const uplink = vm.bool('provides_network') && vm.netvm === null;
  return {
    name: vm.name,
    uuid: vm.uuid,
    memoryMiB: Number(vm.props.get('memory')),
    maxMemoryMiB: Number(vm.props.get('maxmem')),
    vcpus: Number(vm.props.get('vcpus')),
    virtMode: String(vm.props.get('virt_mode')) as VirtMode,
    kernel: disks.kernel
      ? { ...disks.kernel, cmdline: String(vm.props.tryGet('kernelopts') ?? '') }
      : undefined,
    volumes: disks.volumes,
    network: link || uplink ? { ...(link ? { link } : {}), uplink } : undefined,
    debug: vm.bool('debug'),
  };
}
