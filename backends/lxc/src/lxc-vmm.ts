import type { NetworkLink } from '@odyssey/hal';
import { resolveSocket } from '@odyssey/libvirt';
import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import { LxcFlavour, type LxcFlavourOptions } from './lxc-flavour.js';
import type { RuntimeFiles } from './runtime-files.js';
import { VethLinks, containerInitPid } from './veth-links.js';

export interface LxcVmmOptions extends LibvirtConnectionOptions, Omit<LxcFlavourOptions, 'libvirtdSocket'> {}

/** The HAL over libvirt's LXC driver: `LibvirtVmm` with the LXC flavour, plus where each domain's vchans live. */
export class LxcVmm extends LibvirtVmm {
  readonly files: RuntimeFiles;
  readonly #lxc: LxcFlavour;
  readonly #links = new VethLinks((name) => this.initPid(name));

  constructor(options: LxcVmmOptions) {
    const lxc = new LxcFlavour({
      ...options,
      libvirtdSocket: options.socketPath ?? resolveSocket(options.uri).path,
    });
    super(lxc, options);
    this.files = lxc.files;
    this.#lxc = lxc;
  }

  /** Opens, then gives each running domain defined with an uplink its slirp4netns again. */
  override async open(): Promise<void> {
    await super.open();
    await this.#lxc.startUplinks();
  }

  /**
   * Starts the container, then its uplink when it has one; a domain whose uplink cannot be served
   * is killed, so it does not run as a netvm cut off from the outside.
   */
  override async start(name: string): Promise<void> {
    await super.start(name);
    try {
      await this.#lxc.afterStart();
      await this.#lxc.startUplink(name);
    } catch (error) {
      await this.kill(name).catch(() => undefined);
      throw error;
    }
  }

  /** A veth pair: the client's eth0 with its MAC, the netvm's vif<ip in hex> with backendMac (veth-links.ts). */
  async attachLink(link: NetworkLink): Promise<void> {
    await this.#links.attach(link);
  }

  /** Deletes the pair from whichever of the two containers runs (one end deleted takes the other). */
  async detachLink(link: NetworkLink): Promise<void> {
    await this.#links.detach(link);
  }

  /** The host pid of a running container's init, undefined when the domain does not run (or is not defined). */
  async initPid(name: string): Promise<number | undefined> {
    const dom = await this.lookupOrUndefined(name);
    if (!dom || !(await this.isActive(dom))) return undefined;
    return dom.id > 0 ? containerInitPid(dom.id) : undefined;
  }

  override async close(): Promise<void> {
    await this.#lxc.close();
    await super.close();
  }
}
