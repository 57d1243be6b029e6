import { LibvirtVmm, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';
import type { DomainType } from './domain-xml.js';
import { KvmFlavour, type KvmFlavourOptions } from './kvm-flavour.js';
import type { RuntimeFiles } from './runtime-files.js';

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
}
