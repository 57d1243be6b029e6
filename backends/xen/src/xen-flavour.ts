import {
  VmmError,
  supported,
  unsupported,
  type BackendContext,
  type Capability,
  type DomainSpec,
  type VirtMode,
  type VmmCapabilities,
} from '@odyssey/hal';
import { UndefineFlags, type Libvirt } from '@odyssey/libvirt';
import type { DriverFlags, LibvirtFlavour } from '@odyssey/libvirt-hal';
import { domainXml } from './domain-xml.js';
import { ensureUplink } from './uplink.js';
import {
  DEBIAN_HOST_PATHS,
  findHvmSupport,
  hypervisorGuests,
  virtModeSupport,
  type HvmSupport,
  type HypervisorGuests,
  type XenHostPaths,
} from './host-support.js';

export interface XenFlavourOptions {
  readonly log: BackendContext['log'];
  /** Where dom0's side of uplinks keeps its files (the DHCP server's). */
  readonly runtimeDir: string;
  /** Where to look for HVM's device model and firmware; default Debian's Xen 4.17. */
  readonly hostPaths?: XenHostPaths;
}

const FLAGS: DriverFlags = {
  // None: libxl then asks the guest's PV drivers to power off, and presses the ACPI button when it has none.
  shutdown: 0,
  // The only flag libxl's undefine takes; there is no NVRAM or snapshot metadata to drop.
  undefine: UndefineFlags.MANAGED_SAVE,
  // libxl's create takes START_PAUSED only, and restores a managed save image when there is one.
  forceBoot: false,
};

const VIRT_MODES: readonly VirtMode[] = ['pv', 'pvh', 'hvm'];

/** Xen's own name for dom0; no guest may take it. */
const DOM0_NAME = 'Domain-0';

/**
 * libvirt's libxl driver as Odyssey uses it: PV and PVH guests boot their kernel directly, HVM
 * only where a device model and hvmloader exist, disks on blkback (no QEMU in dom0).
 */
export class XenFlavour implements LibvirtFlavour {
  readonly flags = FLAGS;
  private readonly paths: XenHostPaths;
  private hvm: HvmSupport;
  private guests: HypervisorGuests | undefined;

  constructor(private readonly options: XenFlavourOptions) {
    this.paths = options.hostPaths ?? DEBIAN_HOST_PATHS;
    this.hvm = findHvmSupport(this.paths);
  }

  /** Which virt modes can start here and, for those that cannot, why. */
  virtModes(): Record<VirtMode, Capability> {
    return virtModeSupport(this.hvm, this.guests);
  }

  capabilities(): VmmCapabilities {
    const modes = this.virtModes();
    return {
      name: 'xen',
      isolation: 'bare-metal-vm',
      // PV is what every Xen host starts, the nested one included; the image is a PV-capable domU.
      guestImages: ['odyssey-linux-xen'],
      // A domU belongs to the hypervisor: closing the libvirt connection leaves it running.
      domainsOnClose: 'survive',
      virtModes: VIRT_MODES.filter((mode) => modes[mode].supported),
      pause: supported,
      // Suspend is libvirt's managed save: memory goes to disk, the domain stops, resume restores it.
      suspend: supported,
      stats: supported,
      blockDevices: unsupported('block device attach/detach is not implemented by the Xen backend'),
      pciDevices: unsupported('PCI passthrough is not implemented by the Xen backend'),
      usbDevices: unsupported('USB passthrough is not implemented by the Xen backend'),
      // libxenvchan connects two domUs directly over grant tables; the guest agent speaks it.
      vmToVmVchan: supported,
      // A link is a vif whose backend is the netvm (netback there); an uplink a vif on a dom0 bridge.
      network: supported,
      // Every mode's domain XML puts its console on a pty, found in the live domain XML.
      console: supported,
    };
  }

  nameProblem(name: string): string | undefined {
    if (name === DOM0_NAME) return 'it is the name of dom0';
    if (/^\d+$/.test(name)) return 'vchan and the Xen tools would take it for a domain id';
    if (!/^[A-Za-z0-9_.+-]+$/.test(name)) return 'Xen domain names here are letters, digits and _.+-';
    return undefined;
  }

  async afterOpen(libvirt: Libvirt): Promise<void> {
    this.guests = hypervisorGuests(await libvirt.host.getCapabilities());
    const emulator = this.guests.hvmEmulator;
    if (emulator && !this.paths.deviceModels.includes(emulator)) {
      this.hvm = findHvmSupport({ ...this.paths, deviceModels: [emulator, ...this.paths.deviceModels] });
    }
    for (const [mode, support] of Object.entries(this.virtModes())) {
      if (!support.supported)
        this.options.log('info', `xen: ${mode} guests cannot start here: ${support.reason}`);
    }
  }

  async domainXml(spec: DomainSpec): Promise<string> {
    const support = this.virtModes()[spec.virtMode];
    if (!support.supported) {
      throw new VmmError(
        'unsupported',
        `${spec.name}: ${spec.virtMode} guests cannot start here: ${support.reason}`,
      );
    }
    if (spec.network?.uplink) await ensureUplink(this.options.runtimeDir);
    return domainXml({ spec, ...(this.hvm.supported ? { hvm: this.hvm } : {}) });
  }
}
