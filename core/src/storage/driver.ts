/**
 * The one interface every pool driver implements. Drivers are plug-ins: the
 * registry only knows `PoolDriver`, `Pool` and `Volume`, never a concrete class.
 */

import type { PyInt } from '../model/validate.js';

/** One keyword parameter of a driver, in the order upstream's `ListDrivers` prints them. */
export interface DriverParam {
  readonly name: string;
  /** Upstream: a parameter without a default value. */
  readonly required: boolean;
}

export interface PoolDriver {
  /** Name used in `admin.pool.Add+<driver>` and qubes.xml's `driver=`. */
  readonly name: string;
  readonly params: readonly DriverParam[];
  /** Builds the pool object from string parameters (qubes.xml attributes or `admin.pool.Add` lines). */
  create(name: string, params: Readonly<Record<string, string>>): Pool;
}

/** Who a volume belongs to; drivers derive default vids and the kernel version from it. */
export interface VolumeOwner {
  readonly name: string;
  /** `vm-templates` for TemplateVM, `appvms` for every other class. */
  readonly dirPrefix: 'appvms' | 'vm-templates';
  /** The VM's current `kernel` property; a kernel volume follows it instead of a fixed vid. */
  readonly kernel?: () => string | undefined;
}

/** What qubes.xml's `<volume .../>` holds, typed. */
export interface VolumeConfig {
  readonly name: string;
  readonly pool: string;
  readonly vid?: string;
  readonly size?: number;
  readonly rw: boolean;
  readonly saveOnStop: boolean;
  readonly snapOnStart: boolean;
  /** Vid of the volume a snap_on_start volume is snapshotted from (same pool). */
  readonly source?: string;
  readonly revisionsToKeep?: PyInt;
  /** Only present when set explicitly; absent means the driver's default. */
  readonly ephemeral?: boolean;
}

export interface Revision {
  readonly id: string;
  /** `YYYY-MM-DDTHH:MM:SS`, UTC. */
  readonly timestamp: string;
}

/** What the VMM attaches: the file the VM reads and writes while running. */
export interface BlockDevice {
  readonly path: string;
  readonly format: 'raw';
  readonly readOnly: boolean;
}

/** Kernel files for a VM booted with a dom0-provided kernel. */
export interface KernelFiles {
  readonly vmlinuz: string;
  readonly initramfs: string;
  /** Present only when the kernel directory has modules.img. */
  readonly modules?: string;
}

export interface Volume {
  readonly name: string;
  readonly pool: Pool;
  readonly vid: string;
  readonly rw: boolean;
  readonly saveOnStop: boolean;
  readonly snapOnStart: boolean;
  readonly source: string | undefined;
  readonly revisionsToKeep: PyInt;
  readonly ephemeral: boolean;
  /** What `admin.vm.volume.Info` reports as `path=`. */
  readonly path: string | undefined;

  setRw(rw: boolean): void;
  setRevisionsToKeep(value: PyInt): void;
  setEphemeral(value: boolean): void;

  size(): Promise<number>;
  usage(): Promise<number>;
  isDirty(): Promise<boolean>;
  isOutdated(): Promise<boolean>;
  /** True between `start()` and `stop()`. */
  isRunning(): boolean;
  /**
   * Whether what a start makes (the image or LV the VM writes) is still on disk: its VM stopped
   * while no daemon watched it, and `stop()` has yet to commit or discard it.
   */
  hasStartLeftovers(): Promise<boolean>;

  create(): Promise<void>;
  /**
   * Drops what an import or copy cut short by the daemon's death left behind;
   * a call on the volume made after it starts runs after it.
   */
  recover(): Promise<void>;
  remove(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  verify(): Promise<void>;
  /** Grow only. */
  resize(size: number): Promise<void>;
  /** Oldest first. */
  revisions(): Promise<Revision[]>;
  revert(revisionId: string): Promise<void>;

  /** Starts an import: returns the path to write exactly `size` bytes to (default: current size). */
  importBegin(size?: number): Promise<{ path: string; size: number }>;
  /** Commits (success) or discards the data written since `importBegin`. */
  importEnd(success: boolean): Promise<void>;
  /** Replaces this volume's data with `src`'s (CloneTo, qvm-clone). */
  importVolume(src: Volume): Promise<void>;
  /** A path holding the committed data (not what a running VM is writing). */
  exportPath(): Promise<string>;

  blockDevice(): Promise<BlockDevice | undefined>;
  config(): VolumeConfig;
}

export interface Pool {
  readonly name: string;
  readonly driver: string;
  /** Directory the pool lives in, for `included_in` checks; undefined for non-directory pools. */
  readonly dirPath: string | undefined;
  readonly revisionsToKeep: PyInt;
  readonly ephemeralVolatile: boolean;

  setRevisionsToKeep(value: PyInt): void;
  setEphemeralVolatile(value: boolean): void;
  /** Driver params + `driver` + `name`, values as upstream prints them (booleans `True`/`False`). */
  config(): Record<string, string>;

  /** Prepares the backing store when the pool is added; throws if it cannot work. */
  setup(): Promise<void>;
  destroy(): Promise<void>;

  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume;
  /** Forgets a volume object without touching disk (VM unloaded, config replaced). */
  forgetVolume(volume: Volume): void;
  listVolumes(): Promise<Volume[]>;
  getVolume(vid: string): Promise<Volume | undefined>;

  size(): Promise<number | undefined>;
  usage(): Promise<number | undefined>;
  usageDetails(): Promise<Record<string, number>>;
}
