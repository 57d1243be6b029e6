import type { Capability, NetworkLink, VirtMode } from '@odyssey/hal';
import { DeviceModifyFlags, XmlFlags, type Domain } from '@odyssey/libvirt';
import { LibvirtVmm, buildDeviceXml, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import { LIBXL_LOG_DIR, markLibxlLog, withLibxlLog } from './libxl-log.js';
import { linkInterface, liveLinks, type LiveLink } from './network-xml.js';
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

  /**
   * A link is one vif of the client whose backend is the netvm: libxl makes both ends (netback
   * in the netvm makes its side), so only the client's domain changes. The vif comes from the
   * client's domain XML when the netvm ran at its start; otherwise, or when it is served by
   * another netvm, it is hot-plugged here.
   */
  async attachLink(link: NetworkLink): Promise<void> {
    const what = `attach the link of ${link.frontendDomain} to ${link.backendDomain}`;
    const client = await this.running(link.frontendDomain, what);
    await this.running(link.backendDomain, what);
    const present = await this.liveLink(client, link, what);
    if (present?.backendDomain === link.backendDomain) return;
    if (present) await this.unplug(client, link, what);
    const xml = buildDeviceXml('interface', linkInterface(link));
    await this.call(what, () => this.libvirt.domains.attachDevice(client, xml, DeviceModifyFlags.LIVE));
  }

  /** The client's vif out (libxl takes netback's side with it); nothing when the client is not running. */
  async detachLink(link: NetworkLink): Promise<void> {
    const what = `detach the link of ${link.frontendDomain} from ${link.backendDomain}`;
    const client = await this.activeOrUndefined(link.frontendDomain);
    if (client && (await this.liveLink(client, link, what))) await this.unplug(client, link, what);
  }

  private async liveLink(client: Domain, link: NetworkLink, what: string): Promise<LiveLink | undefined> {
    const xml = await this.call(what, () => this.libvirt.domains.getXMLDesc(client, XmlFlags.SECURE));
    return liveLinks(xml).find((nic) => nic.mac === link.mac.toLowerCase());
  }

  /** libvirt finds the vif by its MAC; libxl's removal returns once both ends are gone. */
  private async unplug(client: Domain, link: NetworkLink, what: string): Promise<void> {
    const xml = buildDeviceXml('interface', linkInterface(link));
    await this.call(what, () => this.libvirt.domains.detachDevice(client, xml, DeviceModifyFlags.LIVE));
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
