import { StoragePoolException } from '../../model/errors.js';
import type { PyInt } from '../../model/validate.js';
import type { PoolDriver, VolumeConfig } from '../driver.js';
import type { ImageVolume } from '../image-volume.js';
import { DirPool } from './dir-pool.js';

export const FILE_DRIVER = 'file';

/**
 * Plain sparse image files. Upstream layers device-mapper snapshots on top;
 * here the VM works on its own copy (reflinked when the filesystem allows,
 * else a hole-preserving copy), which needs no root-only kernel machinery.
 */
export class FilePool extends DirPool {
  constructor(name: string, params: Readonly<Record<string, string>>) {
    // Upstream's file driver keeps at most one old revision.
    super(name, params, FILE_DRIVER, 1);
  }

  /** Upstream's file pool keeps no revision of a volume it does not save on stop. */
  defaultRevisionsToKeep(config: VolumeConfig): PyInt {
    return config.saveOnStop ? this.revisionsToKeep : 0;
  }

  readonly revisionOnImport = false;
  readonly everyVolumeSized = true;
  readonly sizeOfInfoPath = true;

  /** Upstream reports the origin image, and a snapshot's source image, as the volume path. */
  infoPath(volume: ImageVolume): string {
    return volume.pathSourceClean ?? volume.pathClean;
  }

  checkResize(volume: ImageVolume): void {
    if (!volume.rw) throw new StoragePoolException(`Can not resize readonly volume ${volume.vid}`);
    if (volume.snapOnStart) {
      // Upstream's text, missing space included.
      throw new StoragePoolException('Cannot resize volume based on a template - resizethe template instead');
    }
  }
}

export const fileDriver: PoolDriver = {
  name: FILE_DRIVER,
  params: [
    { name: 'revisions_to_keep', required: false },
    { name: 'dir_path', required: true },
    { name: 'ephemeral_volatile', required: false },
  ],
  create: (name, params) => new FilePool(name, params),
};
