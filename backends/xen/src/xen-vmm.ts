import type { Capability, VirtMode } from '@odyssey/hal';
import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import { LIBXL_LOG_DIR, markLibxlLog, withLibxlLog } from './libxl-log.js';
import { XenFlavour, type XenFlavourOptions } from './xen-flavour.js';

export interface XenVmmOptions extends LibvirtConnectionOptions, XenFlavourOptions {
  /** Where libvirt's libxl driver keeps libxl's log; default Debian's libvirt's. */
  readonly libxlLogDir?: string;
}

/** The HAL over libvirt's libxl driver: `LibvirtVmm` with the Xen flavour, plus domids for vchan. */
export class XenVmm extends LibvirtVmm {
  private readonly xen: XenFlavour;
  private readonly libxlLogDir: string;

  constructor(options: XenVmmOptions) {
    const xen = new XenFlavour(options);
    super(xen, options);
    this.xen = xen;
    this.libxlLogDir = options.libxlLogDir ?? LIBXL_LOG_DIR;
  }

  /** A start libxl fails says why: libvirt's error alone does not (libxl-log.ts). */
  override async start(name: string): Promise<void> {
    await this.explainingLibxl(() => super.start(name));
  }

  /** A resume is libxl's restore: the same domain creation, disks and hotplug scripts included. */
  override async resume(name: string): Promise<void> {
    await this.explainingLibxl(() => super.resume(name));
  }

  /** Runs a libxl domain creation; its failure carries libxl's own lines written meanwhile. */
  private async explainingLibxl(create: () => Promise<void>): Promise<void> {
    const mark = await markLibxlLog(this.libxlLogDir);
    try {
      await create();
    } catch (error) {
      throw await withLibxlLog(error, mark);
    }
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
