import type { DomainSpec, VirtMode } from '@odyssey/hal';
import type { Vm } from '../model/vm.js';
import type { StartedVolumes } from '../storage/vm-storage.js';
import { linkOf } from './network-links.js';
import { P } from '../model/vm-properties.js';

/** Derives what a backend needs to run the VM from its properties and its started volumes. */
export function buildDomainSpec(vm: Vm, disks: StartedVolumes): DomainSpec {
  const link = linkOf(vm);
  // A qube that provides network and has none of its own is the edge (sys-net): it gets the uplink.
  const uplink = vm.bool('provides_network') && vm.netvm === null;
  return {
    name: vm.name,
    uuid: vm.uuid,
    memoryMiB: vm.props.get(P.memory),
    maxMemoryMiB: vm.props.get(P.maxmem),
    vcpus: vm.props.get(P.vcpus),
    // virt_mode's setter admits only these three (lower-cased), and its default is one of them.
    virtMode: vm.props.get(P.virt_mode) as VirtMode,
    kernel: disks.kernel ? { ...disks.kernel, cmdline: vm.props.tryGet(P.kernelopts) ?? '' } : undefined,
    volumes: disks.volumes,
    network: link || uplink ? { ...(link ? { link } : {}), uplink } : undefined,
    debug: vm.bool('debug'),
  };
}
