import { setTimeout as sleep } from 'node:timers/promises';
import { VmmError, backendMac, type NetworkLink } from '@odyssey/hal';
import { DeviceModifyFlags, XmlFlags, type Domain } from '@odyssey/libvirt';
import { LibvirtVmm, buildDeviceXml, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import type { DomainType } from './domain-xml.js';
import { KvmFlavour, type KvmFlavourOptions } from './kvm-flavour.js';
import { frontendInterface, udpInterfaces, type LinkPorts } from './network-xml.js';
import { LinkMonitor } from './link-monitor.js';
import type { RuntimeFiles } from './runtime-files.js';

import { UNPLUG_POLL_MS, UNPLUG_TIMEOUT_MS } from './link-monitor.js';

export interface KvmVmmOptions extends LibvirtConnectionOptions, KvmFlavourOptions {}

/** The HAL over libvirt's QEMU driver: `LibvirtVmm` with the KVM flavour, plus where each guest's vchan channel ends. */
export class KvmVmm extends LibvirtVmm {
  readonly files: RuntimeFiles;
  private readonly kvm: KvmFlavour;
  private readonly monitor: LinkMonitor;

  constructor(options: KvmVmmOptions) {
    const kvm = new KvmFlavour(options);
    super(kvm, options);
    this.kvm = kvm;
    this.files = kvm.files;
    this.monitor = new LinkMonitor((dom, command) => this.libvirt.domains.qemuMonitorCommand(dom, command));
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
   * The client's NIC comes from its domain XML (libvirt's, read back from the live XML) or from an
   * earlier hot-plug here; a client running without one gets one. The netvm then gets its side
   * with the same ports, replacing a stale one for the same client.
   */
  async attachLink(link: NetworkLink): Promise<void> {
    const what = `attach the link of ${link.frontendDomain} to ${link.backendDomain}`;
    const frontend = await this.running(link.frontendDomain, what);
    const backend = await this.running(link.backendDomain, what);
    const mac = link.mac.toLowerCase();
    let ports = (await this.liveUdp(frontend, what)).find((nic) => nic.mac === mac)?.ports;
    ports ??= await this.monitor.plugged(frontend, mac, what);
    if (ports) {
      this.kvm.linkPorts.claim(link.frontendDomain, ports);
    } else {
      // A client running without its NIC (moved from no netvm, or its netvm restarted) gets a new one.
      ports = await this.kvm.linkPorts.allocate(link.frontendDomain);
      await this.monitor.plug(frontend, mac, ports.frontend, ports.backend, what);
    }
    const theirs = await this.monitor.plugged(backend, backendMac(link.ip), what);
    if (theirs && samePeer(theirs, ports)) return;
    if (theirs) await this.monitor.unplug(backend, backendMac(link.ip), what);
    await this.monitor.plug(backend, backendMac(link.ip), ports.backend, ports.frontend, what);
  }

  /**
   * Both sides out, as upstream detaches a qube's vif: the netvm's, and the client's NIC when the
   * client runs (it sees its interface go, and a new one come with the next attach).
   */
  async detachLink(link: NetworkLink): Promise<void> {
    const what = `detach the link of ${link.frontendDomain} from ${link.backendDomain}`;
    const backend = await this.activeOrUndefined(link.backendDomain);
    if (backend && (await this.monitor.plugged(backend, backendMac(link.ip), what)))
      await this.monitor.unplug(backend, backendMac(link.ip), what);
    const frontend = await this.activeOrUndefined(link.frontendDomain);
    if (!frontend) return;
    const mac = link.mac.toLowerCase();
    const defined = (await this.liveUdp(frontend, what)).find((nic) => nic.mac === mac);
    if (defined) {
      await this.unplugDefined(frontend, link, defined.ports, what);
    } else if (await this.monitor.plugged(frontend, mac, what)) {
      await this.monitor.unplug(frontend, mac, what);
    }
  }

  private async liveUdp(dom: Domain, what: string) {
    const xml = await this.call(what, () => this.libvirt.domains.getXMLDesc(dom, XmlFlags.SECURE));
    return udpInterfaces(xml);
  }

  /**
   * Unplugs a NIC of the domain XML: libvirt finds it by its MAC and asks the guest to release it,
   * returning after a few seconds even if the guest has not yet; a NIC plugged again with the same
   * MAC before the old one is gone would meet it, so this waits until it is gone.
   */
  private async unplugDefined(dom: Domain, link: NetworkLink, ports: LinkPorts, what: string): Promise<void> {
    const mac = link.mac.toLowerCase();
    // libvirt parses the whole element before it looks the device up by MAC.
    const xml = buildDeviceXml('interface', frontendInterface(link, ports));
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
