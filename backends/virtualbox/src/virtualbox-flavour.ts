import { mkdir, rm } from 'node:fs/promises';
import {
  supported,
  unsupported,
  type BackendContext,
  type DomainSpec,
  type VmmCapabilities,
} from '@odyssey/hal';
import { runtimeDirNameProblem, type DriverFlags, type LibvirtFlavour } from '@odyssey/libvirt-hal';
import { domainXml } from './domain-xml.js';
import { PipeMeeting } from './pipe-meeting.js';
import { RuntimeFiles } from './runtime-files.js';

export type VirtualBoxFlavourOptions = BackendContext;

export const VIRTUALBOX_CAPABILITIES: VmmCapabilities = {
  name: 'virtualbox',
  isolation: 'hosted-vm',
  // The project's guests are a kernel and an initramfs booted directly; VirtualBox boots disks.
  guestImages: [],
  // A VM runs in its own VirtualBox process, which closing libvirt's connection does not end (its
  // vchan pipe is another matter: VirtualBox connects to it once, at power-on; README).
  domainsOnClose: 'survive',
  virtModes: ['hvm'],
  // VirtualBox pauses a running VM (libvirt's suspend/resume).
  pause: supported,
  suspend: unsupported("libvirt's vbox driver has no managed save, which the HAL's suspend is"),
  stats: unsupported("libvirt's vbox driver reports no CPU time for a domain"),
  blockDevices: unsupported('block device attach/detach is not implemented by the virtualbox backend'),
  pciDevices: unsupported("libvirt's vbox driver cannot pass PCI devices through"),
  usbDevices: unsupported('USB passthrough is not implemented by the virtualbox backend'),
  vmToVmVchan: unsupported("dom0 does not relay vchans between VirtualBox guests' serial ports"),
};

const FLAGS: DriverFlags = {
  // The only way libvirt's vbox driver asks a guest to stop: the ACPI power button.
  shutdown: 0,
  undefine: 0,
  forceBoot: false,
};

/**
 * libvirt's vbox driver (`vbox:///session`) as Odyssey uses it: a VM per domain booted from its
 * volumes' images, its vchans multiplexed over one serial port in host-pipe mode.
 */
export class VirtualBoxFlavour implements LibvirtFlavour {
  readonly files: RuntimeFiles;
  readonly flags = FLAGS;
  readonly #pipes = new Map<string, PipeMeeting>();

  constructor(options: VirtualBoxFlavourOptions) {
    this.files = new RuntimeFiles(options.runtimeDir);
  }

  capabilities(): VmmCapabilities {
    return VIRTUALBOX_CAPABILITIES;
  }

  nameProblem(name: string): string | undefined {
    return runtimeDirNameProblem(name);
  }

  async domainXml(spec: DomainSpec): Promise<string> {
    const xml = domainXml({ spec, vchanPipe: this.files.vchanPipe(spec.name) });
    await mkdir(this.files.domainDir(spec.name), { recursive: true, mode: 0o700 });
    // Listening before the VM can power on: VirtualBox connects to the pipe once, at power-on.
    if (!this.#pipes.has(spec.name))
      this.#pipes.set(
        spec.name,
        await PipeMeeting.open(this.files.vchanPipe(spec.name), this.files.vchanSocket(spec.name)),
      );
    return xml;
  }

  async afterUndefine(name: string): Promise<void> {
    await this.#pipes.get(name)?.close();
    this.#pipes.delete(name);
    await rm(this.files.domainDir(name), { recursive: true, force: true });
  }
}
