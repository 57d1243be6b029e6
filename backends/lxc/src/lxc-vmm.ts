import { resolveSocket } from '@odyssey/libvirt';
import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import { LxcFlavour, type LxcFlavourOptions } from './lxc-flavour.js';
import type { RuntimeFiles } from './runtime-files.js';

export interface LxcVmmOptions extends LibvirtConnectionOptions, Omit<LxcFlavourOptions, 'libvirtdSocket'> {}

/** The HAL over libvirt's LXC driver: `LibvirtVmm` with the LXC flavour, plus where each domain's vchans live. */
export class LxcVmm extends LibvirtVmm {
  readonly files: RuntimeFiles;
  readonly #lxc: LxcFlavour;

  constructor(options: LxcVmmOptions) {
    const lxc = new LxcFlavour({
      ...options,
      libvirtdSocket: options.socketPath ?? resolveSocket(options.uri).path,
    });
    super(lxc, options);
    this.files = lxc.files;
    this.#lxc = lxc;
  }

  override async close(): Promise<void> {
    this.#lxc.close();
    await super.close();
  }
}
