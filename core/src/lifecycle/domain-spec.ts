import type { DomainSpec, VirtMode } from '@odyssey/hal';
import type { Vm } from '../model/vm.js';
import type { StartedVolumes } from '../storage/vm-storage.js';

/** Derives what a backend needs to run the VM from its properties and its started volumes. */
export function buildDomainSpec(vm: Vm, disks: StartedVolumes): DomainSpec {
  const netvm = vm.netvm;
  const ip = vm.props.tryGet('ip');
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
    network: netvm
      ? {
          mac: String(vm.props.get('mac')),
          ip: typeof ip === 'string' ? ip : undefined,
          backendDomain: netvm.name,
        }
      : undefined,
    debug: vm.bool('debug'),
  };
}
