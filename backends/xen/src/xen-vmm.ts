import type { Capability, VirtMode } from '@odyssey/hal';
import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import { XenFlavour, type XenFlavourOptions } from './xen-flavour.js';

export interface XenVmmOptions extends LibvirtConnectionOptions, XenFlavourOptions {}

/** The HAL over libvirt's libxl driver: `LibvirtVmm` with the Xen flavour, plus domids for vchan. */
export class XenVmm extends LibvirtVmm {
  private readonly xen: XenFlavour;

  constructor(options: XenVmmOptions) {
    const xen = new XenFlavour(options);
    super(xen, options);
    this.xen = xen;
  }

  /** Which virt modes can start here and, for those that cannot, why (capabilities() lists only the first). */
  virtModes(): Record<VirtMode, Capability> {
    return this.xen.virtModes();
  }

  /**
   * The Xen domid of a domain named as vchan names it: `dom0` (Qubes' name; Xen's is Domain-0),
   * a decimal domid, or a running domain's name (libvirt's domain id is the domid).
   */
  async domid(domain: string): Promise<number> {
    return domain === 'dom0' ? 0 : this.idOf(domain);
  }
}
