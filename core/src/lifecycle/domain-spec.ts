import { join } from 'node:path';

import type { DomainSpec, VirtMode } from '../hal/domain-spec.js';
import type { Vm } from '../model/vm.js';

/** Derives what a backend needs to run the VM from its properties (volumes come from storage). */
export function buildDomainSpec(vm: Vm, volumes: DomainSpec['volumes'] = []): DomainSpec {
  const kernel = String(vm.props.tryGet('kernel') ?? '');
  const kernelDir = join(vm.app.kernelsDir, kernel);
  const netvm = vm.netvm;
  const ip = vm.props.tryGet('ip');
  return {
    name: vm.name,
    uuid: vm.uuid,
    memoryMiB: Number(vm.props.get('memory')),
    maxMemoryMiB: Number(vm.props.get('maxmem')),
    vcpus: Number(vm.props.get('vcpus')),
    virtMode: String(vm.props.get('virt_mode')) as VirtMode,
    kernel:
      kernel === ''
        ? undefined
        : {
            kernel: join(kernelDir, 'vmlinuz'),
            initramfs: join(kernelDir, 'initramfs'),
            cmdline: String(vm.props.tryGet('kernelopts') ?? ''),
          },
    volumes,
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
