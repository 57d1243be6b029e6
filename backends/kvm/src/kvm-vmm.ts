import { setTimeout as sleep } from 'node:timers/promises';
import { VmmError, backendMac, type NetworkLink } from '@odyssey/hal';
import { DeviceModifyFlags, XmlFlags, type Domain } from '@odyssey/libvirt';
import { LibvirtVmm, attrs, buildDeviceXml, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import type { DomainType } from './domain-xml.js';
import { KvmFlavour, type KvmFlavourOptions } from './kvm-flavour.js';
import { backendInterface, frontendInterface, udpInterfaces, type LinkPorts } from './network-xml.js';
import type { RuntimeFiles } from './runtime-files.js';

/** How long a guest may take to release an unplugged NIC (ACPI hotplug; slow under TCG). */
const UNPLUG_TIMEOUT_MS = 60_000;
const UNPLUG_POLL_MS = 250;

export interface KvmVmmOptions extends LibvirtConnectionOptions, KvmFlavourOptions {}

/** The HAL over libvirt's QEMU driver: `LibvirtVmm` with the KVM flavour, plus where each guest's vchan channel ends. */
export class KvmVmm extends LibvirtVmm {
  readonly files: RuntimeFiles;
  private readonly kvm: KvmFlavour;

  constructor(options: KvmVmmOptions) {
    const kvm = new KvmFlavour(options);
    super(kvm, options);
    this.kvm = kvm;
    this.files = kvm.files;
  }

  /** The domain type domains are defined with, once the probe has decided. */
  get domainType(): DomainType | undefined {
    return this.kvm.domainType;
  }

  /**
   * The virtio-serial socket that carries the vchans of `remoteDomain`, named as vchan names
   * domains: by libvirt id (decimal) or by name.
   */
  async vchanSocket(remoteDomain: string): Promise<string> {
    return this.files.vchanSocket(await this.nameOf(remoteDomain));
  }

  /**
   * The client's NIC is read back from its live XML (its ports are the link's truth, also after a
   * daemon restart); a client running without one gets it hot-plugged. The netvm then gets its
   * side with the same ports, replacing a stale one for the same client.
   */
  async attachLink(link: NetworkLink): Promise<void> {
    const what = `attach the link of ${link.frontendDomain} to ${link.backendDomain}`;
    const frontend = await this.running(link.frontendDomain, what);
    const backend = await this.running(link.backendDomain, what);
    const mac = link.mac.toLowerCase();
    let ports = (await this.liveUdp(frontend, what)).find((nic) => nic.mac === mac)?.ports;
    if (ports) {
      this.kvm.linkPorts.claim(link.frontendDomain, ports);
    } else {
      // A client running without its NIC (moved from no netvm, or its netvm restarted) gets a new one.
      ports = await this.kvm.linkPorts.allocate(link.frontendDomain);
      await this.hotplug(frontend, buildDeviceXml('interface', frontendInterface(link, ports)), what);
    }
    const theirs = (await this.liveUdp(backend, what)).find((nic) => nic.mac === backendMac(link.ip));
    if (theirs && samePeer(theirs.ports, ports)) return;
    if (theirs) await this.unplug(backend, backendMac(link.ip), what);
    await this.hotplug(backend, buildDeviceXml('interface', backendInterface(link, ports)), what);
  }

  /**
   * Both sides out, as upstream detaches a qube's vif: the netvm's, and the client's NIC when the
   * client runs (it sees its interface go, and a new one come with the next attach).
   */
  async detachLink(link: NetworkLink): Promise<void> {
    const what = `detach the link of ${link.frontendDomain} from ${link.backendDomain}`;
    await this.unplugIfPresent(link.backendDomain, backendMac(link.ip), what);
    await this.unplugIfPresent(link.frontendDomain, link.mac.toLowerCase(), what);
  }

  private async unplugIfPresent(name: string, mac: string, what: string): Promise<void> {
    const dom = await this.lookupOrUndefined(name);
    if (!dom || !(await this.isActive(dom))) return;
    if (!(await this.liveUdp(dom, what)).some((nic) => nic.mac === mac)) return;
    await this.unplug(dom, mac, what);
  }

  private async running(name: string, what: string): Promise<Domain> {
    const dom = await this.lookup(name);
    if (!(await this.isActive(dom))) throw new VmmError('invalid-state', `${what}: ${name} is not running`);
    return dom;
  }

  private async liveUdp(dom: Domain, what: string) {
    const xml = await this.call(what, () => this.libvirt.domains.getXMLDesc(dom, XmlFlags.SECURE));
    return udpInterfaces(xml);
  }

  private async hotplug(dom: Domain, xml: string, what: string): Promise<void> {
    await this.call(what, () => this.libvirt.domains.attachDevice(dom, xml, DeviceModifyFlags.LIVE));
  }

  /**
   * libvirt finds the interface by its MAC and asks the guest to release the PCI device, returning
   * after a few seconds even if the guest has not yet; a NIC plugged again with the same MAC before
   * the old one is gone would make that MAC name two devices, so this waits until it is gone.
   */
  private async unplug(dom: Domain, mac: string, what: string): Promise<void> {
    const xml = buildDeviceXml('interface', { ...attrs({ type: 'udp' }), mac: attrs({ address: mac }) });
    await this.call(what, () => this.libvirt.domains.detachDevice(dom, xml, DeviceModifyFlags.LIVE));
    const deadline = Date.now() + UNPLUG_TIMEOUT_MS;
    while ((await this.liveUdp(dom, what)).some((nic) => nic.mac === mac)) {
      if (Date.now() > deadline) {
        throw new VmmError(
          'timeout',
          `${what}: ${dom.name} did not release interface ${mac} within ${UNPLUG_TIMEOUT_MS} ms`,
        );
      }
      await sleep(UNPLUG_POLL_MS);
    }
  }
}

/** Whether a netvm's interface is the peer of a client's ports (its own ports are the client's, swapped). */
function samePeer(netvmSide: LinkPorts, client: LinkPorts): boolean {
  return netvmSide.frontend === client.backend && netvmSide.backend === client.frontend;
}
