import { chmod, mkdir, rm } from 'node:fs/promises';
import {
  supported,
  unsupported,
  type BackendContext,
  type DomainSpec,
  type VmmCapabilities,
} from '@odyssey/hal';
import { ShutdownFlags, UndefineFlags, type Libvirt } from '@odyssey/libvirt';
import { runtimeDirNameProblem, type DriverFlags, type LibvirtFlavour } from '@odyssey/libvirt-hal';
import { probeAccel, type AccelVerdict } from './accel-probe.js';
import { domainXml, type DomainType } from './domain-xml.js';
import { LinkPortPool } from './link-ports.js';
import { RuntimeFiles } from './runtime-files.js';

export interface KvmFlavourOptions extends BackendContext {
  /** How long a KVM probe guest may take to boot (see accel-probe.ts). */
  readonly probeTimeoutMs?: number;
}

const CAPABILITIES: VmmCapabilities = {
  name: 'kvm',
  isolation: 'hosted-vm',
  guestImages: ['odyssey-linux-kvm'],
  // A QEMU process belongs to libvirtd, not to our connection: it runs on when odysseyd closes.
  domainsOnClose: 'survive',
  // pv and pvh are Xen modes; every KVM guest is a (direct kernel boot) HVM guest.
  virtModes: ['hvm'],
  pause: supported,
  // Suspend is libvirt's managed save: memory goes to disk, the domain stops, resume restores it.
  suspend: supported,
  stats: supported,
  blockDevices: unsupported('block device attach/detach is not implemented by the KVM backend'),
  pciDevices: unsupported('PCI passthrough is not implemented by the KVM backend'),
  usbDevices: unsupported('USB passthrough is not implemented by the KVM backend'),
  // A guest's one virtio-serial channel ends in the admin domain, which relays guest-to-guest vchans.
  vmToVmVchan: supported,
  // Links are virtio NIC pairs joined by QEMU UDP sockets on loopback; the uplink is QEMU user-mode networking.
  network: supported,
  // ttyS0 on a pty, found in the live domain XML.
  console: supported,
};

const FLAGS: DriverFlags = {
  // The guest image powers off on the ACPI power button (busybox acpid).
  shutdown: ShutdownFlags.ACPI_POWER_BTN,
  undefine: UndefineFlags.MANAGED_SAVE | UndefineFlags.SNAPSHOTS_METADATA | UndefineFlags.NVRAM,
  forceBoot: true,
};

/**
 * libvirt's QEMU driver as Odyssey uses it: domain type `kvm` or `qemu` (TCG) from an
 * acceleration probe, never from configuration alone; each domain's console and vchan
 * socket in its own runtime directory.
 */
export class KvmFlavour implements LibvirtFlavour {
  readonly files: RuntimeFiles;
  readonly flags = FLAGS;
  /** virDomainInfo's memory is the guest's balloon; what the host pays is QEMU's resident set. */
  readonly hostMemory = 'rss';
  readonly linkPorts = new LinkPortPool();
  private accel: AccelVerdict | undefined;

  constructor(private readonly options: KvmFlavourOptions) {
    this.files = new RuntimeFiles(options.runtimeDir);
  }

  capabilities(): VmmCapabilities {
    return CAPABILITIES;
  }

  /** The domain type domains are defined with, once the probe has decided. */
  get domainType(): DomainType | undefined {
    return this.accel?.type;
  }

  nameProblem(name: string): string | undefined {
    return runtimeDirNameProblem(name);
  }

  async afterOpen(): Promise<void> {
    // QEMU runs as libvirt's unprivileged user and must reach the consoles and sockets below.
    await mkdir(this.files.runtimeDir, { recursive: true });
    await chmod(this.files.runtimeDir, 0o755);
  }

  async domainXml(spec: DomainSpec, libvirt: Libvirt): Promise<string> {
    const type = await this.decideType(libvirt, spec.kernel?.kernel);
    const dir = this.files.domainDir(spec.name);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    await chmod(this.files.domainsDir(), 0o755);
    const link = spec.network?.link;
    // A fresh pair each define: the ports of the domain's previous run may be taken by now.
    const linkPorts = link ? await this.linkPorts.allocate(spec.name) : undefined;
    if (!link) this.linkPorts.release(spec.name);
    return domainXml({
      ...(linkPorts ? { linkPorts } : {}),
      spec,
      type,
      consoleLog: this.files.consoleLog(spec.name),
      vchanSocket: this.files.vchanSocket(spec.name),
    });
  }

  async afterUndefine(name: string): Promise<void> {
    this.linkPorts.release(name);
    await rm(this.files.domainDir(name), { recursive: true, force: true });
  }

  private async decideType(libvirt: Libvirt, kernel: string | undefined): Promise<DomainType> {
    if (this.accel) return this.accel.type;
    const verdict = await probeAccel(
      {
        libvirt,
        cacheFile: this.files.accelVerdict(),
        workDir: this.files.probeDir(),
        ...(this.options.probeTimeoutMs ? { timeoutMs: this.options.probeTimeoutMs } : {}),
        log: (message) => this.options.log('info', message),
      },
      kernel,
    );
    if (verdict.final) this.accel = verdict;
    return verdict.type;
  }
}
