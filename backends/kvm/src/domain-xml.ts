import { XMLBuilder } from 'fast-xml-parser';
import type { DomainSpec, VolumeRole, VolumeSpec } from '@odyssey/core/hal';
import { VCHAN_PORT_NAME } from './runtime-files.js';

/** libvirt's domain type: `kvm` for hardware acceleration, `qemu` for TCG. */
export type DomainType = 'kvm' | 'qemu';

export interface DomainXmlInput {
  readonly spec: DomainSpec;
  readonly type: DomainType;
  readonly consoleLog: string;
  readonly vchanSocket: string;
}

type Node = Record<string, unknown>;

const ATTR = '@_';
const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  format: true,
  indentBy: '  ',
  suppressEmptyNode: true,
});

/** Qubes' disk order (xvda root, xvdb private, xvdc volatile, xvdd modules) kept on virtio. */
const DISK_TARGET: Record<VolumeRole, string> = {
  root: 'vda',
  private: 'vdb',
  volatile: 'vdc',
  kernel: 'vdd',
};

function attrs(values: Record<string, string | number>): Node {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [`${ATTR}${k}`, String(v)]));
}

function disk(volume: VolumeSpec): Node {
  return {
    ...attrs({ type: 'file', device: 'disk' }),
    driver: attrs({ name: 'qemu', type: volume.format }),
    source: attrs({ file: volume.path }),
    target: attrs({ dev: DISK_TARGET[volume.role], bus: 'virtio' }),
    ...(volume.readOnly ? { readonly: '' } : {}),
  };
}

/** The guest's console and the hang-up behaviour direct kernel boot needs, unless the spec chose its own. */
function kernelCmdline(cmdline: string): string {
  const extra = [];
  if (!/(^|\s)console=/.test(cmdline)) extra.push('console=ttyS0');
  // A guest panic must end the domain (on_reboot destroy), not hang it.
  if (!/(^|\s)panic=/.test(cmdline)) extra.push('panic=-1');
  return [cmdline.trim(), ...extra].filter((s) => s.length > 0).join(' ');
}

/**
 * libvirt domain XML for a spec. Every value goes through the XML builder (which escapes it);
 * nothing is concatenated into markup.
 */
export function domainXml({ spec, type, consoleLog, vchanSocket }: DomainXmlInput): string {
  const balloon = spec.maxMemoryMiB > spec.memoryMiB;
  const os: Node = { type: { ...attrs({ arch: 'x86_64', machine: 'pc' }), '#text': 'hvm' } };
  if (spec.kernel) {
    os['kernel'] = spec.kernel.kernel;
    if (spec.kernel.initramfs) os['initrd'] = spec.kernel.initramfs;
    os['cmdline'] = kernelCmdline(spec.kernel.cmdline);
  } else {
    os['boot'] = attrs({ dev: 'hd' });
  }
  const disks = spec.volumes.filter((v) => v.format !== 'dir').map(disk);
  const domain: Node = {
    ...attrs({ type }),
    name: spec.name,
    uuid: spec.uuid,
    memory: { ...attrs({ unit: 'MiB' }), '#text': String(balloon ? spec.maxMemoryMiB : spec.memoryMiB) },
    currentMemory: { ...attrs({ unit: 'MiB' }), '#text': String(spec.memoryMiB) },
    vcpu: String(spec.vcpus),
    os,
    // Without ACPI a guest's poweroff only halts the CPU and the domain stays running.
    features: { acpi: '' },
    clock: attrs({ offset: 'utc' }),
    on_poweroff: 'destroy',
    on_reboot: 'destroy',
    on_crash: 'destroy',
    devices: {
      ...(disks.length > 0 ? { disk: disks } : {}),
      serial: {
        ...attrs({ type: 'file' }),
        source: attrs({ path: consoleLog, append: 'off' }),
        target: attrs({ port: 0 }),
      },
      channel: {
        ...attrs({ type: 'unix' }),
        source: attrs({ mode: 'bind', path: vchanSocket }),
        target: attrs({ type: 'virtio', name: VCHAN_PORT_NAME }),
      },
      memballoon: attrs({ model: balloon ? 'virtio' : 'none' }),
    },
  };
  return builder.build({ domain }) as string;
}
