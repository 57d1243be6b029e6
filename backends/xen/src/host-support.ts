import { accessSync, constants } from 'node:fs';
import {
  supported,
  unsupported,
  type Capability,
  type Supported,
  type Unsupported,
  type VirtMode,
} from '@odyssey/hal';
import { XMLParser } from 'fast-xml-parser';

/** Where an HVM guest's firmware and device model may be on this host. */
export interface XenHostPaths {
  /** Device models (QEMU built for Xen), the first executable one wins. */
  readonly deviceModels: readonly string[];
  /** hvmloader, the first readable one wins. */
  readonly hvmloaders: readonly string[];
}

/** Debian's Xen 4.17: libxl's own default device model (package qemu-system-xen), then upstream's layout. */
export const DEBIAN_HOST_PATHS: XenHostPaths = {
  deviceModels: ['/usr/libexec/xen-qemu-system-i386', '/usr/lib/xen-4.17/bin/qemu-system-i386'],
  hvmloaders: ['/usr/lib/xen-4.17/boot/hvmloader'],
};

/** What an HVM domain is defined with. */
export interface HvmBoot {
  readonly deviceModel: string;
  readonly hvmloader: string;
}

export type HvmSupport = (Supported & HvmBoot) | Unsupported;

function firstUsable(paths: readonly string[], mode: number): string | undefined {
  return paths.find((path) => {
    try {
      accessSync(path, mode);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * HVM needs QEMU in dom0 (built for Xen) to emulate the platform, and hvmloader as firmware;
 * without either a domain would fail only at start, so it is declared unsupported up front.
 */
export function findHvmSupport(paths: XenHostPaths): HvmSupport {
  const deviceModel = firstUsable(paths.deviceModels, constants.X_OK);
  if (!deviceModel) {
    return unsupported(
      `no Xen device model (QEMU built for Xen; Debian package qemu-system-xen) at ${paths.deviceModels.join(' or ')}`,
    );
  }
  const hvmloader = firstUsable(paths.hvmloaders, constants.R_OK);
  if (!hvmloader) return unsupported(`no hvmloader at ${paths.hvmloaders.join(' or ')}`);
  return { supported: true, deviceModel, hvmloader };
}

/** What the hypervisor itself runs, from libvirt's capabilities XML. */
export interface HypervisorGuests {
  /** libvirt os types: `xen` (PV), `xenpvh`, `hvm`. */
  readonly osTypes: ReadonlySet<string>;
  /** The device model libvirt names for HVM guests, if any. */
  readonly hvmEmulator?: string;
}

const parser = new XMLParser({ isArray: (name) => name === 'guest' });

export function hypervisorGuests(capabilitiesXml: string): HypervisorGuests {
  const caps = parser.parse(capabilitiesXml) as {
    capabilities?: { guest?: { os_type?: string; arch?: { emulator?: string } }[] };
  };
  const guests = caps.capabilities?.guest ?? [];
  const hvmEmulator = guests.find((g) => g.os_type === 'hvm')?.arch?.emulator;
  return {
    osTypes: new Set(guests.map((g) => g.os_type).filter((t): t is string => t !== undefined)),
    ...(hvmEmulator ? { hvmEmulator } : {}),
  };
}

const NO_HW_VIRT =
  'Xen reports no hardware virtualisation (no VT-x/AMD-V, e.g. Xen nested under QEMU/TCG), which';

/**
 * Which virt modes can start: PV needs only Xen; PVH and HVM need hardware virtualisation,
 * HVM also a device model and hvmloader. `guests` is unknown until libvirt is reached.
 */
export function virtModeSupport(
  hvm: HvmSupport,
  guests: HypervisorGuests | undefined,
): Record<VirtMode, Capability> {
  const runs = (osType: string): boolean => guests === undefined || guests.osTypes.has(osType);
  return {
    pv: runs('xen') ? supported : unsupported('Xen reports no PV guest type'),
    pvh: runs('xenpvh') ? supported : unsupported(`${NO_HW_VIRT} PVH needs`),
    hvm: !hvm.supported ? hvm : runs('hvm') ? supported : unsupported(`${NO_HW_VIRT} HVM needs`),
  };
}
