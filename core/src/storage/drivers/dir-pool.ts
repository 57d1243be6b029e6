import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import type { PyInt } from '../../model/validate.js';
import type { Volume, VolumeConfig, VolumeOwner } from '../driver.js';
import { ensureDir, errno } from '../fsutil.js';
import { ImageVolume, type ImagePool } from '../image-volume.js';
import {
  checkRevisionsLimit,
  checkRevisionsToKeep,
  pyBool,
  requireParam,
  revisionPoolParams,
} from '../params.js';

/** Subdirectories upstream's file pools create for VM images. */
const VM_DIRS = ['appvms', 'vm-templates'];

/** What the file and file-reflink pools share: a directory of image files. */
export abstract class DirPool implements ImagePool {
  readonly dirPath: string;
  private revisions: PyInt = 1;
  /** What config() prints: upstream's file pool int()s the parameter, the others keep it as given. */
  private revisionsText = '1';
  private ephemeral: boolean;
  private readonly volumes = new Map<string, ImageVolume>();

  constructor(
    readonly name: string,
    params: Readonly<Record<string, string>>,
    readonly driver: string,
    readonly maxRevisionsToKeep: number | undefined,
  ) {
    this.dirPath = path.resolve(requireParam(params, 'dir_path', driver));
    const common = revisionPoolParams(params);
    this.ephemeral = common.ephemeralVolatile;
    this.setRevisionsToKeep(common.revisionsToKeep);
    // Upstream's file pool takes the parameter through its own setter, the one with its maximum.
    if (maxRevisionsToKeep === undefined) this.revisionsText = common.revisionsText;
  }

  get revisionsToKeep(): PyInt {
    return this.revisions;
  }

  get ephemeralVolatile(): boolean {
    return this.ephemeral;
  }

  setRevisionsToKeep(value: PyInt): void {
    checkRevisionsToKeep(value);
    checkRevisionsLimit(this.driver, this.maxRevisionsToKeep, value);
    this.revisions = value;
    this.revisionsText = String(value);
  }

  setEphemeralVolatile(value: boolean): void {
    this.ephemeral = value;
  }

  config(): Record<string, string> {
    return {
      name: this.name,
      dir_path: this.dirPath,
      driver: this.driver,
      revisions_to_keep: this.revisionsText,
      ephemeral_volatile: pyBool(this.ephemeral),
    };
  }

  abstract defaultRevisionsToKeep(config: VolumeConfig): PyInt;
  abstract infoPath(volume: ImageVolume): string;
  abstract readonly revisionOnImport: boolean;
  abstract readonly everyVolumeSized: boolean;
  abstract readonly sizeOfInfoPath: boolean;
  abstract checkResize(volume: ImageVolume): void;

  async setup(): Promise<void> {
    await ensureDir(this.dirPath);
    for (const d of VM_DIRS) await ensureDir(path.join(this.dirPath, d));
  }

  async destroy(): Promise<void> {
    // Volumes are removed one by one with their VMs; the directory may hold other data.
  }

  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume {
    const vid = config.vid ?? `${owner.dirPrefix}/${owner.name}/${config.name}`;
    const volume = new ImageVolume(this, config.name, vid, config);
    this.volumes.set(vid, volume);
    return volume;
  }

  forgetVolume(volume: Volume): void {
    if (this.volumes.get(volume.vid) === volume) this.volumes.delete(volume.vid);
  }

  async listVolumes(): Promise<Volume[]> {
    return [...this.volumes.values()];
  }

  async getVolume(vid: string): Promise<Volume | undefined> {
    return this.volumes.get(vid);
  }

  private async statfs(): Promise<{ size: number; usage: number } | undefined> {
    try {
      const st = await fs.statfs(this.dirPath);
      return { size: st.bsize * st.blocks, usage: st.bsize * (st.blocks - st.bfree) };
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  async size(): Promise<number | undefined> {
    return (await this.statfs())?.size;
  }

  async usage(): Promise<number | undefined> {
    return (await this.statfs())?.usage;
  }

  async usageDetails(): Promise<Record<string, number>> {
    const st = await this.statfs();
    return st === undefined ? {} : { data_size: st.size, data_usage: st.usage };
  }
}
