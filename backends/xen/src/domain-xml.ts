import { VmmError, type DomainSpec, type VolumeRole, type VolumeSpec } from '@odyssey/hal';
import {
  END_ON_ANY_STOP,
  attrs,
  buildDomainXml,
  identityAndSize,
  textNode,
  withKernelDefaults,
  type XmlNode,
} from '@odyssey/libvirt-hal';
import type { HvmBoot } from './host-support.js';
import { linkInterface, uplinkInterface } from './network-xml.js';

export interface XenDomainXmlInput {
  readonly spec: DomainSpec;
  /** What an HVM spec runs with; required when `spec.virtMode` is hvm. */
  readonly hvm?: HvmBoot;
}

/** Qubes' disk names: root, private, volatile, kernel modules. */
const DISK_TARGET: Record<VolumeRole, string> = {
  root: 'xvda',
  private: 'xvdb',
  volatile: 'xvdc',
  kernel: 'xvdd',
};

/**
 * libvirt's libxl driver maps `<driver name='phy'/>` to libxl's PHY backend: blkback in dom0's
 * kernel, fed by the `block` hotplug script, which puts a regular file on a loop device. It
 * needs no QEMU in dom0 (driver `qemu` or `file` would mean qdisk, i.e. a QEMU process per
 * domain), but serves raw images only.
 */
function disk(volume: VolumeSpec): XmlNode {
  if (volume.format !== 'raw') {
    throw new VmmError(
      'unsupported',
      `volume ${volume.name} (${volume.path}) is ${volume.format}: the Xen backend serves raw images through blkback; ${volume.format} would need QEMU (qdisk) in dom0`,
    );
  }
  return {
    ...attrs({ type: 'file', device: 'disk' }),
    driver: attrs({ name: 'phy', type: 'raw' }),
    source: attrs({ file: volume.path }),
    target: attrs({ dev: DISK_TARGET[volume.role], bus: 'xen' }),
    ...(volume.readOnly ? { readonly: '' } : {}),
  };
}

/**
 * The kernel's root device: the root volume's disk (xvda), as the KVM backend names its vda, so a
 * kernel whose initramfs mounts a root (the Debian template's) finds it; an initramfs with its own
 * /init (the busybox image) ignores it.
 */
function rootDefault(spec: DomainSpec): Record<string, string> {
  const root = spec.volumes.find((v) => v.role === 'root' && v.format !== 'dir');
  return root ? { root: `/dev/${DISK_TARGET.root}` } : {};
}

function directBoot(spec: DomainSpec, console: string): XmlNode {
  if (!spec.kernel) {
    throw new VmmError(
      'unsupported',
      `${spec.name}: a ${spec.virtMode} domain boots its kernel directly (spec.kernel); the Xen backend runs no bootloader`,
    );
  }
  return {
    kernel: spec.kernel.kernel,
    ...(spec.kernel.initramfs ? { initrd: spec.kernel.initramfs } : {}),
    cmdline: withKernelDefaults(spec.kernel.cmdline, { console, ...rootDefault(spec) }),
  };
}

/** What differs between the virt modes. */
interface ModeXml {
  readonly os: XmlNode;
  readonly features?: XmlNode;
  readonly emulator?: string;
  readonly consoles: XmlNode;
}

function pvOrPvh(spec: DomainSpec): ModeXml {
  const type =
    spec.virtMode === 'pv'
      ? textNode({ arch: 'x86_64', machine: 'xenpv' }, 'linux')
      : textNode({ arch: 'x86_64', machine: 'xenpvh' }, 'xenpvh');
  return {
    os: { type, ...directBoot(spec, 'hvc0') },
    // The PV console (hvc0) on a pty, as xenconsoled and `virsh console` reach it.
    consoles: { console: { ...attrs({ type: 'pty' }), target: attrs({ type: 'xen', port: 0 }) } },
  };
}

function hvm(spec: DomainSpec, boot: HvmBoot | undefined): ModeXml {
  if (!boot) throw new VmmError('unsupported', `${spec.name}: HVM needs a Xen device model and hvmloader`);
  return {
    os: {
      type: textNode({ arch: 'x86_64', machine: 'xenfv' }, 'hvm'),
      loader: textNode({ type: 'rom' }, boot.hvmloader),
      ...(spec.kernel ? directBoot(spec, 'ttyS0') : { boot: attrs({ dev: 'hd' }) }),
    },
    // Without ACPI a guest's poweroff only halts the CPU and the domain stays running.
    features: { acpi: '', apic: '', pae: '' },
    emulator: boot.deviceModel,
    // The emulated serial port (ttyS0), which the device model puts on a pty.
    consoles: {
      serial: { ...attrs({ type: 'pty' }), target: attrs({ port: 0 }) },
      console: { ...attrs({ type: 'pty' }), target: attrs({ type: 'serial', port: 0 }) },
    },
  };
}

/** The domain's own vifs: its link to its netvm (netback there serves it) and its uplink (dom0's). */
function interfaces(spec: DomainSpec): XmlNode[] {
  const nics: XmlNode[] = [];
  if (spec.network?.link) nics.push(linkInterface(spec.network.link));
  if (spec.network?.uplink) nics.push(uplinkInterface());
  return nics;
}

/** libxl domain XML for a spec (every value escaped by the builder). */
export function domainXml({ spec, hvm: hvmBoot }: XenDomainXmlInput): string {
  const mode = spec.virtMode === 'hvm' ? hvm(spec, hvmBoot) : pvOrPvh(spec);
  const disks = spec.volumes.filter((v) => v.format !== 'dir').map(disk);
  const nics = interfaces(spec);
  return buildDomainXml({
    ...attrs({ type: 'xen' }),
    ...identityAndSize(spec),
    os: mode.os,
    ...(mode.features ? { features: mode.features } : {}),
    clock: attrs({ offset: 'utc' }),
    ...END_ON_ANY_STOP,
    devices: {
      ...(mode.emulator ? { emulator: mode.emulator } : {}),
      ...(disks.length > 0 ? { disk: disks } : {}),
      ...(nics.length > 0 ? { interface: nics } : {}),
      ...mode.consoles,
    },
  });
}
