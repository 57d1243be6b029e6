/**
 * What a backend can do. The conformance suite reads this before it runs anything: a check of
 * a capability declared unsupported is reported "unsupported (declared: reason)" and not
 * attempted, a declared one that fails is a failure, so declare honestly.
 */
export interface Unsupported {
  readonly supported: false;
  readonly reason: string;
}
export interface Supported {
  readonly supported: true;
}
export type Capability = Supported | Unsupported;

/**
 * How far a domain is kept from dom0 and from the other domains, weakest first; the report
 * shows it beside the results so a packager weighs both.
 */
export type IsolationClass =
  /** Domains are host processes: one kernel, file system and network with dom0 and each other. */
  | 'process'
  /** Domains are containers: one host kernel, separated by namespaces and cgroups. */
  | 'container'
  /** Domains are VMs of a hypervisor inside dom0's kernel (KVM, VirtualBox): dom0's kernel is trusted. */
  | 'hosted-vm'
  /** Domains are VMs of a hypervisor below dom0 (Xen): dom0 is itself a guest of it. */
  | 'bare-metal-vm';

/**
 * A kind of guest a backend boots, so that a suite (or core) knows what to hand it. The
 * `odyssey-linux-*` kinds are `scripts/build-guest-image.sh --flavour kvm|xen`: a kernel and an
 * initramfs booted directly (DomainSpec.kernel), busybox and the qrexec agent inside, which
 * listens on vchan port 512 once up.
 */
export type GuestImageKind =
  /** The domain is an `odyssey-qrexec-agent` process; DomainSpec.kernel and volumes are not used. */
  | 'agent-process'
  /** The project's Linux image, agent vchan over virtio-serial. */
  | 'odyssey-linux-kvm'
  /** The project's Linux image as a Xen domU, agent vchan over libxenvchan. */
  | 'odyssey-linux-xen'
  /**
   * The programs of the project's Linux image as a container's root file system
   * (backends/lxc/scripts/build-rootfs.sh): no kernel of its own, agent vchan over UNIX sockets.
   */
  | 'odyssey-rootfs-lxc';

/**
 * What `Vmm.close()` does to the domains running at that moment (the daemon closes its Vmm when it
 * stops, and a restarted daemon opens a fresh one):
 * - `survive`: they keep running. A fresh instance (`createBackend` with the same `runtimeDir`, then
 *   `open()`) reports each Running with the same xid in `state()` and `stats()`, its vchans answer
 *   as before, and its `events()` reports what happens to them from then on; the closed instance's
 *   `events()` ends without a `stopped` for them.
 * - `stop`: `close()` stops them (they cannot outlive the backend, e.g. they live in its process).
 *   The closed instance's `events()` yields `stopped` for each before it ends, and a fresh
 *   instance's `state()` says Halted.
 */
export type DomainsOnClose = 'survive' | 'stop';

export interface VmmCapabilities {
  /** Backend name as shown in reports, e.g. "kvm". */
  readonly name: string;
  readonly isolation: IsolationClass;
  /** The guest kinds this backend boots; empty when it runs nothing the suite can make (guest checks are then unsupported). */
  readonly guestImages: readonly GuestImageKind[];
  /** What close() means for running domains; the suite checks the one declared. */
  readonly domainsOnClose: DomainsOnClose;
  /** Virtualisation modes this backend can start. */
  readonly virtModes: readonly ('pv' | 'pvh' | 'hvm')[];
  readonly pause: Capability;
  readonly suspend: Capability;
  readonly stats: Capability;
  readonly blockDevices: Capability;
  readonly pciDevices: Capability;
  readonly usbDevices: Capability;
  /** Whether guests of different domains can reach each other over vchan directly. */
  readonly vmToVmVchan: Capability;
  /** Serial console ptys (Vmm.consolePath); absent means unsupported. */
  readonly console?: Capability;
  /**
   * Network links between qubes and an uplink for a netvm without netvm (DomainSpec.network,
   * Vmm.attachLink/detachLink); absent means unsupported.
   */
  readonly network?: Capability;
}

/** The members of VmmCapabilities that say whether the backend can do one thing. */
export type CapabilityName = {
  [K in keyof VmmCapabilities]-?: NonNullable<VmmCapabilities[K]> extends Capability ? K : never;
}[keyof VmmCapabilities];

export const supported: Supported = { supported: true };
export function unsupported(reason: string): Unsupported {
  return { supported: false, reason };
}
