import type { DomainSpec, VmmCapabilities, VmmEvent } from '@odyssey/hal';
import type { Libvirt } from '@odyssey/libvirt';

/** Why a domain stopped, as the HAL reports it. */
export type StopReason = Extract<VmmEvent, { type: 'stopped' }>['reason'];

/**
 * What one libvirt driver (QEMU, libxl, ...) makes a backend supply; `LibvirtVmm` does the rest
 * (lifecycle, events, stats, shutdown-then-destroy, managed save) the same way for every driver.
 */
export interface LibvirtFlavour {
  /** What the backend can do on this host, as reported to the conformance suite. */
  capabilities(): VmmCapabilities;

  /** Why `name` cannot name a domain of this backend, or undefined when it can. */
  nameProblem(name: string): string | undefined;

  /**
   * The libvirt domain XML for `spec`. May prepare what the domain needs on the host (runtime
   * files, an acceleration probe through `libvirt`); rejects with a `VmmError` for a spec the
   * backend cannot run.
   */
  domainXml(spec: DomainSpec, libvirt: Libvirt): Promise<string>;

  /** The flags this driver accepts where drivers differ. */
  readonly flags: DriverFlags;

  /**
   * Where what the host pays for a running domain is read (DomainRuntime.memoryKb): `rss`, the
   * RSS entry of virDomainMemoryStats, for a driver whose virDomainInfo memory is what the guest
   * was given rather than what the host holds (QEMU: the balloon's size); by default virDomainInfo's
   * memory (libxl: the domain's allocation; LXC: its cgroup's usage).
   */
  readonly hostMemory?: 'rss';

  /**
   * Asks the running `name` to power off by the flavour's own means, where the driver's shutdown
   * call cannot (an LXC container whose init is systemd: libvirt's signal is SIGTERM, which systemd
   * takes for a re-exec); resolves false to leave it to virDomainShutdownFlags with `flags.shutdown`.
   */
  powerOff?(name: string): Promise<boolean>;

  /**
   * The reason to report for a stop libvirt reported with `reported`, where the driver does not
   * know the whole story (libvirt's LXC driver reports every end of a container's init as a
   * shutdown). Synchronous, so that the stop is published in order with the domain's other events.
   */
  stopReason?(name: string, reported: StopReason): StopReason;

  /** Prepares the host, or learns what the hypervisor offers, once libvirt is reached (before the first define). */
  afterOpen?(libvirt: Libvirt): Promise<void>;

  /** Readies the host for a start of `name` (after what an earlier run left is cleared). */
  beforeStart?(name: string): Promise<void>;

  /**
   * Clears what `beforeStart` readied, once `name` is seen stopped (shutdown, kill, crash, a
   * failed start, or at open and after a reconnect); may be called again for a domain already
   * cleared, or late, once the domain runs again, which it must check.
   */
  afterStop?(name: string): Promise<void>;

  /** Forgets what `domainXml` prepared for a domain that is now undefined. */
  afterUndefine?(name: string): Promise<void>;
}

/** Where libvirt's drivers accept different flags for the same call. */
export interface DriverFlags {
  /** virDomainShutdownFlags: how a guest is asked to power off. */
  readonly shutdown: number;
  /** virDomainUndefineFlags: everything a defined domain may leave behind that the driver can drop. */
  readonly undefine: number;
  /**
   * Whether virDomainCreateWithFlags takes FORCE_BOOT (a fresh boot that discards a managed save
   * image); without it, `start` removes the image itself before creating the domain.
   */
  readonly forceBoot: boolean;
}

/**
 * The nameProblem of a flavour that keeps a directory per domain under its runtime dir: the name
 * becomes a path component, so it may not be `.`, `..` or hold anything but [A-Za-z0-9_.+-].
 */
export function runtimeDirNameProblem(name: string): string | undefined {
  if (/^[A-Za-z0-9_.+-]+$/.test(name) && name !== '.' && name !== '..') return undefined;
  return 'it names a directory of the runtime dir';
}
