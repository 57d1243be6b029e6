import { StoragePoolException } from '../../model/errors.js';
import type { PyInt } from '../../model/validate.js';
import type { PoolDriver } from '../driver.js';
import { ensureDir, reflinkSupported, removeEmptyDir } from '../fsutil.js';
import type { ImageVolume } from '../image-volume.js';
import { parseBool } from '../params.js';
import { DirPool } from './dir-pool.js';

export const REFLINK_DRIVER = 'file-reflink';

/** Image files cloned with FICLONE: starting a VM or taking a revision costs no data copy. */
export class ReflinkPool extends DirPool {
  private readonly setupCheck: boolean;

  constructor(name: string, params: Readonly<Record<string, string>>) {
    super(name, params, REFLINK_DRIVER, undefined);
    this.setupCheck = parseBool(params['setup_check'] ?? 'True');
  }

  /** Upstream's file-reflink pool gives every volume its own count, a volatile or snapshot one too. */
  defaultRevisionsToKeep(): PyInt {
    return this.revisionsToKeep;
  }

  readonly revisionOnImport = true;
  readonly everyVolumeSized = false;
  readonly sizeOfInfoPath = false;

  /** Only read-only volumes are refused; upstream grows and shrinks anything else. */
  checkResize(volume: ImageVolume): void {
    if (!volume.rw) throw new StoragePoolException(`Cannot resize: ${volume.vid} is read-only`);
  }

  /** The VM always sees the dirty image; upstream reports that path. */
  infoPath(volume: ImageVolume): string {
    return volume.pathDirty;
  }

  override async setup(): Promise<void> {
    const created = await ensureDir(this.dirPath);
    if (this.setupCheck && !(await reflinkSupported(this.dirPath))) {
      if (created) await removeEmptyDir(this.dirPath);
      throw new StoragePoolException(
        `The filesystem of ${this.dirPath} cannot make reflink copies, so every VM start and ` +
          `revision would copy whole images. Use the 'file' driver, or pass setup_check=False ` +
          `to accept the slow copies and the extra disk space.`,
      );
    }
    await super.setup();
  }
}

export const reflinkDriver: PoolDriver = {
  name: REFLINK_DRIVER,
  params: [
    { name: 'revisions_to_keep', required: false },
    { name: 'dir_path', required: true },
    { name: 'setup_check', required: false },
    { name: 'ephemeral_volatile', required: false },
  ],
  create: (name, params) => new ReflinkPool(name, params),
};
