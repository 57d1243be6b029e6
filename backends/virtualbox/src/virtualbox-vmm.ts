import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import type { RuntimeFiles } from './runtime-files.js';
import { VirtualBoxFlavour, type VirtualBoxFlavourOptions } from './virtualbox-flavour.js';

export interface VirtualBoxVmmOptions extends LibvirtConnectionOptions, VirtualBoxFlavourOptions {}

/** The HAL over libvirt's vbox driver: `LibvirtVmm` with the VirtualBox flavour, plus where each guest's vchan pipe is. */
export class VirtualBoxVmm extends LibvirtVmm {
  readonly files: RuntimeFiles;

  constructor(options: VirtualBoxVmmOptions) {
    const flavour = new VirtualBoxFlavour(options);
    super(flavour, options);
    this.files = flavour.files;
  }

  /** The socket dom0 dials for the vchans of `remoteDomain`, named as vchan names domains (id or name). */
  async vchanSocket(remoteDomain: string): Promise<string> {
    return this.files.vchanSocket(await this.nameOf(remoteDomain));
  }
}
