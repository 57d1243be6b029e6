import type { DomainSpec, VolumeRole, VolumeSpec } from '@odyssey/hal';
import {
  END_ON_ANY_STOP,
  attrs,
  balloons,
  buildDomainXml,
  identityAndSize,
  textNode,
  withKernelDefaults,
  type XmlNode,
} from '@odyssey/libvirt-hal';
import { frontendInterface, uplinkInterface, type LinkPorts } from './network-xml.js';
import { VCHAN_PORT_NAME } from './runtime-files.js';

/** libvirt's domain type: `kvm` for hardware acceleration, `qemu` for TCG. */
export type DomainType = 'kvm' | 'qemu';

export interface DomainXmlInput {
  readonly spec: DomainSpec;
  readonly type: DomainType;
  readonly consoleLog: string;
  readonly vchanSocket: string;
  /** The UDP ports of the frontend link; needed when the spec has one. */
  readonly linkPorts?: LinkPorts;
}

/** Qubes' disk order (xvda root, xvdb private, xvdc volatile, xvdd modules) kept on virtio. */
const DISK_TARGET: Record<VolumeRole, string> = {
  root: 'vda',
  private: 'vdb',
  volatile: 'vdc',
  kernel: 'vdd',
};

function disk(volume: VolumeSpec): XmlNode {
  return {
    ...attrs({ type: 'file', device: 'disk' }),
    driver: attrs({ name: 'qemu', type: volume.format }),
    source: attrs({ file: volume.path }),
    target: attrs({ dev: DISK_TARGET[volume.role], bus: 'virtio' }),
    ...(volume.readOnly ? { readonly: '' } : {}),
  };
}

/**
 * The guest's console, and a panic that still ends the domain (its reboot meets on_reboot destroy)
 * when the guest kernel has no pvpanic driver loaded to report it as a crash.
 */
const KERNEL_DEFAULTS = { console: 'ttyS0', panic: '-1' };

/**
 * The kernel's root device: the root volume's disk, as upstream's libvirt template names it for
 * its guests; an initramfs with its own /init (the busybox image) ignores it.
 */
function rootDefault(spec: DomainSpec): Record<string, string> {
  const root = spec.volumes.find((v) => v.role === 'root' && v.format !== 'dir');
  return root ? { root: `/dev/${DISK_TARGET.root}` } : {};
}

/** The domain's own interfaces: its link to its netvm, its uplink; the netvm side of links is hot-plugged. */
function interfaces(spec: DomainSpec, linkPorts: LinkPorts | undefined): XmlNode[] {
  const nics: XmlNode[] = [];
  const link = spec.network?.link;
  if (link) {
    if (!linkPorts) throw new Error(`${spec.name} has a network link but no ports were given for it`);
    nics.push(frontendInterface(link, linkPorts));
  }
  if (spec.network?.uplink) nics.push(uplinkInterface());
  return nics;
}

/** libvirt domain XML for a spec (every value escaped by the builder). */
export function domainXml({ spec, type, consoleLog, vchanSocket, linkPorts }: DomainXmlInput): string {
  const os: XmlNode = { type: textNode({ arch: 'x86_64', machine: 'pc' }, 'hvm') };
  if (spec.kernel) {
    os['kernel'] = spec.kernel.kernel;
    if (spec.kernel.initramfs) os['initrd'] = spec.kernel.initramfs;
    os['cmdline'] = withKernelDefaults(spec.kernel.cmdline, { ...KERNEL_DEFAULTS, ...rootDefault(spec) });
  } else {
    os['boot'] = attrs({ dev: 'hd' });
  }
  const disks = spec.volumes.filter((v) => v.format !== 'dir').map(disk);
  const nics = interfaces(spec, linkPorts);
  const domain: XmlNode = {
    ...attrs({ type }),
    ...identityAndSize(spec),
    os,
    // Without ACPI a guest's poweroff only halts the CPU and the domain stays running.
    features: { acpi: '' },
    clock: attrs({ offset: 'utc' }),
    ...END_ON_ANY_STOP,
    devices: {
      ...(disks.length > 0 ? { disk: disks } : {}),
      ...(nics.length > 0 ? { interface: nics } : {}),
      // ttyS0 on a pty for admin.vm.Console, everything it prints also kept in the console log
      // (QEMU writes the log whether or not anyone has the pty open).
      serial: {
        ...attrs({ type: 'pty' }),
        log: attrs({ file: consoleLog, append: 'off' }),
        target: attrs({ port: 0 }),
      },
      console: { ...attrs({ type: 'pty' }), target: attrs({ type: 'serial', port: 0 }) },
      channel: {
        ...attrs({ type: 'unix' }),
        source: attrs({ mode: 'bind', path: vchanSocket }),
        target: attrs({ type: 'virtio', name: VCHAN_PORT_NAME }),
      },
      // pvpanic at the ISA port QEMU's ACPI table names (QEMU0001): a guest kernel panic pauses the
      // domain with GUEST_PANICKED, and libvirt applies on_crash (destroy), stopping it as crashed
      // rather than as the clean shutdown the panic's reboot would look like.
      panic: attrs({ model: 'isa' }),
      memballoon: attrs({ model: balloons(spec) ? 'virtio' : 'none' }),
    },
  };
  return buildDomainXml(domain);
}
