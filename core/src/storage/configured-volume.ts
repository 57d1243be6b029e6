import { QubesValueError } from '../model/errors.js';
import type { PyInt } from '../model/validate.js';
import type { Pool, VolumeConfig } from './driver.js';
import { checkRevisionsLimit } from './params.js';
import { checkSnapSource } from './volume-config.js';

/** A driver's bounds on revisions_to_keep for a new volume. */
export interface RevisionLimits {
  /** What a volume whose qubes.xml element names none keeps. */
  readonly initial: PyInt;
  /** Upper bound, if the driver has one. */
  readonly max?: number | undefined;
}

/**
 * The settings of qubes.xml's `<volume .../>` as upstream's Volume keeps them, for the drivers
 * that store their own data (file and reflink images, LVM thin volumes): one set of rules for
 * rw, revisions_to_keep and ephemeral, and one `config()` to write them back, so the drivers
 * cannot drift apart on them. A subclass holds where the data lives.
 */
export abstract class ConfiguredVolume<P extends Pool> {
  readonly saveOnStop: boolean;
  readonly snapOnStart: boolean;
  readonly source: string | undefined;
  /** The size qubes.xml records; the driver updates it when the data's size changes. */
  protected configuredSize: number;
  private rwFlag: boolean;
  private revisionsKept: PyInt = 0;
  private explicitEphemeral: boolean | undefined;
  private readonly maxRevisionsToKeep: number | undefined;

  constructor(
    readonly pool: P,
    readonly name: string,
    readonly vid: string,
    config: VolumeConfig,
    limits: RevisionLimits,
  ) {
    checkSnapSource(name, config);
    this.saveOnStop = config.saveOnStop;
    this.snapOnStart = config.snapOnStart;
    this.source = config.source;
    this.rwFlag = config.rw;
    this.explicitEphemeral = config.ephemeral;
    this.configuredSize = config.size ?? 0;
    this.maxRevisionsToKeep = limits.max;
    this.setRevisionsToKeep(config.revisionsToKeep ?? limits.initial);
  }

  get rw(): boolean {
    return this.rwFlag;
  }

  get revisionsToKeep(): PyInt {
    return this.revisionsKept;
  }

  get ephemeral(): boolean {
    if (this.explicitEphemeral !== undefined) return this.explicitEphemeral;
    if (this.snapOnStart || this.saveOnStop || !this.rw) return false;
    return this.pool.ephemeralVolatile;
  }

  /** revisions_to_keep = -1: the VM writes the committed data in place, no copy on start. */
  protected get snapshotsDisabled(): boolean {
    return this.revisionsKept === -1 && !this.snapOnStart && this.saveOnStop;
  }

  setRw(rw: boolean): void {
    this.rwFlag = rw;
  }

  setRevisionsToKeep(value: PyInt): void {
    if ((typeof value === 'number' && !Number.isInteger(value)) || value < -1) {
      throw new QubesValueError('Invalid value for revisions_to_keep');
    }
    checkRevisionsLimit(this.pool.driver, this.maxRevisionsToKeep, value);
    this.revisionsKept = value;
  }

  setEphemeral(value: boolean): void {
    if (value && (this.snapOnStart || this.saveOnStop || !this.rw)) {
      throw new QubesValueError(
        'Cannot enable ephemeral on snap_on_start or save_on_stop or non-dom0 or not writable volume',
      );
    }
    this.explicitEphemeral = value;
  }

  config(): VolumeConfig {
    return {
      name: this.name,
      pool: this.pool.name,
      vid: this.vid,
      revisionsToKeep: this.revisionsKept,
      rw: this.rw,
      saveOnStop: this.saveOnStop,
      snapOnStart: this.snapOnStart,
      ...(this.explicitEphemeral !== undefined ? { ephemeral: this.explicitEphemeral } : {}),
      ...(this.configuredSize ? { size: this.configuredSize } : {}),
      ...(this.source !== undefined ? { source: this.source } : {}),
    };
  }
}
