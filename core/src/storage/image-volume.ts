import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { pyRepr, StoragePoolException } from '../model/errors.js';
import type { PyInt } from '../model/validate.js';
import type { BlockDevice, Pool, Revision, Volume, VolumeConfig } from './driver.js';
import { ConfiguredVolume } from './configured-volume.js';
import {
  allocatedBytes,
  copyImage,
  createSparseFile,
  errno,
  exists,
  fileSize,
  fsyncPath,
  isoDate,
  removeEmptyDir,
  removeIfExists,
  renameDurable,
  resizeFile,
  TEMP_MARK,
} from './fsutil.js';
import { Mutex } from './lock.js';

/** The pool side an image volume needs; implemented by the file and file-reflink pools. */
export interface ImagePool extends Pool {
  readonly dirPath: string;
  /** Upper bound for revisions_to_keep, if the driver has one. */
  readonly maxRevisionsToKeep: number | undefined;
  /** revisions_to_keep of a volume whose config names none: the driver's rule (upstream's init_volume). */
  defaultRevisionsToKeep(config: VolumeConfig): PyInt;
  /** What `admin.vm.volume.Info` shows as `path=` for this driver. */
  infoPath(volume: ImageVolume): string;
  /**
   * Whether data brought in from outside (Import, Clear, CloneTo) keeps the
   * replaced data as a revision: file-reflink does, upstream's file driver
   * only makes a revision when a running VM's changes are committed.
   */
  readonly revisionOnImport: boolean;
  /**
   * Every volume needs a size to be created, even one nothing is written to at creation (a
   * kernel or volatile volume): upstream's file driver checks this for all of them.
   */
  readonly everyVolumeSized: boolean;
  /** A snapshot volume's size is its origin's current size (upstream's file driver). */
  readonly sizeOfInfoPath: boolean;
  /** The driver's refusals of a resize, with its messages; shrinking is allowed as upstream allows it. */
  checkResize(volume: ImageVolume): void;
  forgetVolume(volume: Volume): void;
}

const REVISION_SUFFIX = /^(\d+)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z$/;

/**
 * A volume stored as raw image files in a directory, the layout of upstream's
 * file-reflink driver, shared here by `file` and `file-reflink`:
 *   <vid>.img                 committed data ("clean")
 *   <vid>-dirty.img           what a running VM writes
 *   <vid>-import.img          data being imported
 *   <vid>.img.<N>@<ts>Z       revisions, N increasing
 * Every state change is a rename, so a crash at any point leaves the clean
 * image either old or new, never half-written.
 */
export class ImageVolume extends ConfiguredVolume<ImagePool> implements Volume {
  readonly pathClean: string;
  readonly pathDirty: string;
  readonly pathImport: string;
  private readonly base: string;
  private readonly lock = new Mutex();
  /**
   * From an import's first call to its end: taken synchronously, so one
   * announced import (domain-volume-import-begin) already refuses a second.
   */
  private importing = false;
  /** The size the import in progress commits; set once its file exists. */
  private importSize: number | undefined;
  private running = false;

  constructor(pool: ImagePool, name: string, vid: string, config: VolumeConfig) {
    super(pool, name, vid, config, {
      initial: pool.defaultRevisionsToKeep(config),
      max: pool.maxRevisionsToKeep,
    });
    this.base = path.join(pool.dirPath, vid);
    this.pathClean = `${this.base}.img`;
    this.pathDirty = `${this.base}-dirty.img`;
    this.pathImport = `${this.base}-import.img`;
  }

  get path(): string {
    return this.pool.infoPath(this);
  }

  /** Clean image of the source volume; same pool, so the same directory tree. */
  get pathSourceClean(): string | undefined {
    return this.source === undefined ? undefined : path.join(this.pool.dirPath, `${this.source}.img`);
  }

  async size(): Promise<number> {
    // Upstream's file driver reports the size of the image it names as the path: for a
    // snapshot volume, its origin's, which follows a resize of the template's volume.
    if (this.pool.sizeOfInfoPath && this.snapOnStart) {
      const s = await fileSize(this.pool.infoPath(this));
      if (s !== undefined) return s;
    }
    for (const p of [this.pathDirty, this.pathClean]) {
      const s = await fileSize(p);
      if (s !== undefined) return s;
    }
    return this.configuredSize;
  }

  async usage(): Promise<number> {
    for (const p of [this.pathDirty, this.pathClean]) {
      const used = await allocatedBytes(p);
      if (used !== undefined) return used;
    }
    return 0;
  }

  async isDirty(): Promise<boolean> {
    return this.saveOnStop && (await exists(this.pathDirty));
  }

  isRunning(): boolean {
    return this.running;
  }

  /** Every kind of volume writes its dirty image while started, and stop() commits or removes it. */
  async hasStartLeftovers(): Promise<boolean> {
    return exists(this.pathDirty);
  }

  /** A snapshot is outdated once the source's clean image is a different inode than the one it was taken from. */
  async isOutdated(): Promise<boolean> {
    const src = this.pathSourceClean;
    if (!this.snapOnStart || src === undefined) return false;
    try {
      const [a, b] = await Promise.all([fs.stat(src), fs.stat(this.pathClean)]);
      return a.ino !== b.ino || a.dev !== b.dev;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
  }

  create(): Promise<void> {
    return this.lock.run(async () => {
      const written = this.saveOnStop && !this.snapOnStart;
      // A snapshot's size is its origin's where the driver reports it so (upstream's file driver).
      const size = this.pool.sizeOfInfoPath && this.snapOnStart ? await this.size() : this.configuredSize;
      if ((written || this.pool.everyVolumeSized) && !(size > 0))
        throw new StoragePoolException(`Volume size must be > 0: ${this.vid}`);
      await this.removeAllImages();
      if (written) {
        await createSparseFile(this.pathClean, this.configuredSize);
      }
    });
  }

  recover(): Promise<void> {
    return this.lock.run(() => this.removeIncompleteImages());
  }

  /** Wins over an import in progress, as upstream's: that import's end then fails. */
  remove(): Promise<void> {
    return this.lock.run(async () => {
      this.pool.forgetVolume(this);
      this.running = false;
      this.importing = false;
      this.importSize = undefined;
      await this.removeAllImages();
      await removeEmptyDir(path.dirname(this.base));
    });
  }

  start(): Promise<void> {
    return this.lock.run(async () => {
      this.refuseDuringImport();
      await this.removeIncompleteImages();
      if (this.snapshotsDisabled) {
        await this.pruneRevisions(0);
        if (!(await exists(this.pathDirty))) {
          await this.requireImage(this.pathClean);
          await renameDurable(this.pathClean, this.pathDirty);
        }
      } else if (!(await this.isDirty())) {
        if (this.snapOnStart) {
          const src = this.pathSourceClean as string;
          await this.requireImage(src);
          await removeIfExists(this.pathClean);
          await fs.mkdir(path.dirname(this.pathClean), { recursive: true });
          // The hard link pins the source inode we copy from, for isOutdated().
          await fs.link(src, this.pathClean);
          await copyImage(this.pathClean, this.pathDirty);
        } else if (this.saveOnStop) {
          await this.requireImage(this.pathClean);
          await copyImage(this.pathClean, this.pathDirty);
        } else {
          await createSparseFile(this.pathDirty, this.configuredSize);
        }
      }
      this.running = true;
    });
  }

  stop(): Promise<void> {
    return this.lock.run(async () => {
      if (await this.isDirty()) {
        if (this.snapshotsDisabled) await renameDurable(this.pathDirty, this.pathClean);
        else await this.commit(this.pathDirty);
      } else if (!this.saveOnStop) {
        // A volatile image may have been grown while running; keep that size for next start.
        if (!this.snapOnStart) this.configuredSize = await this.size();
        await removeIfExists(this.pathDirty);
        await removeIfExists(this.pathClean);
      }
      this.running = false;
    });
  }

  async verify(): Promise<void> {
    const img = this.snapOnStart ? this.pathSourceClean : this.saveOnStop ? this.pathClean : undefined;
    if (img !== undefined && !(await exists(img))) {
      throw new StoragePoolException(`Missing image file ${pyRepr(img)} for volume ${this.vid}`);
    }
  }

  resize(size: number): Promise<void> {
    return this.lock.run(async () => {
      this.pool.checkResize(this);
      if (await exists(this.pathDirty)) {
        await resizeFile(this.pathDirty, size);
      } else if (this.saveOnStop) {
        // Never grow the clean image in place: revisions and snapshots may share its inode.
        await copyImage(this.pathClean, this.pathClean, { size });
      }
      this.configuredSize = size;
    });
  }

  async revisions(): Promise<Revision[]> {
    const prefix = `${path.basename(this.pathClean)}.`;
    let names: string[];
    try {
      names = await fs.readdir(path.dirname(this.pathClean));
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw err;
    }
    const revs: Revision[] = [];
    for (const n of names) {
      if (!n.startsWith(prefix)) continue;
      const m = REVISION_SUFFIX.exec(n.slice(prefix.length));
      if (m?.[1] !== undefined && m[2] !== undefined) revs.push({ id: m[1], timestamp: m[2] });
    }
    return revs.sort((a, b) => Number(a.id) - Number(b.id));
  }

  revert(revisionId: string): Promise<void> {
    return this.lock.run(async () => {
      if (await this.isDirty())
        throw new StoragePoolException(`Cannot revert: ${this.vid} is not cleanly stopped`);
      this.refuseDuringImport();
      const rev = (await this.revisions()).find((r) => r.id === revisionId);
      if (rev === undefined) throw new StoragePoolException(`No such revision of ${this.vid}: ${revisionId}`);
      await this.addRevision();
      await renameDurable(this.revisionPath(rev), this.pathClean);
    });
  }

  importBegin(size?: number): Promise<{ path: string; size: number }> {
    try {
      this.refuseDuringImport();
    } catch (err) {
      return Promise.reject(err);
    }
    this.importing = true;
    return this.lock.run(async () => {
      try {
        if (!this.saveOnStop)
          throw new StoragePoolException(`Can not import into save_on_stop=False volume ${this.vid}`);
        if (this.running || (await this.isDirty())) {
          throw new StoragePoolException(`Cannot import data: ${this.vid} is in use`);
        }
        await this.removeIncompleteImages();
        const target = size ?? (await this.size());
        await createSparseFile(this.pathImport, target);
        this.importSize = target;
        return { path: this.pathImport, size: target };
      } catch (err) {
        this.importing = false;
        throw err;
      }
    });
  }

  importEnd(success: boolean): Promise<void> {
    return this.lock.run(async () => {
      const size = this.importSize;
      this.importing = false;
      this.importSize = undefined;
      if (!success) {
        if (size !== undefined) await removeIfExists(this.pathImport);
        return;
      }
      if (size === undefined)
        throw new StoragePoolException(`No import operation in progress on ${this.vid}`);
      try {
        await this.commit(this.pathImport, this.pool.revisionOnImport);
      } catch (err) {
        await removeIfExists(this.pathImport);
        throw err;
      }
      this.configuredSize = size;
    });
  }

  async importVolume(src: Volume): Promise<void> {
    if (!this.saveOnStop) return;
    const srcPath = await src.exportPath();
    await this.lock.run(async () => {
      if (this.running || (await this.isDirty())) {
        throw new StoragePoolException(`Cannot import data: ${this.vid} is in use`);
      }
      this.refuseDuringImport();
      await this.removeIncompleteImages();
      try {
        await copyImage(srcPath, this.pathImport);
        await this.commit(this.pathImport, this.pool.revisionOnImport);
      } catch (err) {
        await removeIfExists(this.pathImport);
        throw err;
      }
      this.configuredSize = (await fileSize(this.pathClean)) ?? this.configuredSize;
    });
  }

  async exportPath(): Promise<string> {
    if (!this.saveOnStop) throw new StoragePoolException(`Cannot export: ${this.vid} is not save_on_stop`);
    await this.requireImage(this.pathClean);
    return this.pathClean;
  }

  async blockDevice(): Promise<BlockDevice> {
    return { path: this.pathDirty, format: 'raw', readOnly: !this.rw };
  }

  /** Makes `from` the clean image, keeping the old clean image as the newest revision if asked to. */
  private async commit(from: string, keepRevision = true): Promise<void> {
    if (keepRevision) await this.addRevision();
    await this.pruneRevisions(this.revisionsToKeep);
    await fsyncPath(from);
    await renameDurable(from, this.pathClean);
  }

  /**
   * A revision is a hard link to the current clean inode: no data is copied,
   * and the rename that follows in commit() gives the clean path a new inode.
   */
  private async addRevision(): Promise<void> {
    if (this.revisionsToKeep <= 0) return;
    let mtime: number;
    try {
      mtime = (await fs.stat(this.pathClean)).mtimeMs / 1000;
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    const revs = await this.revisions();
    const last = revs[revs.length - 1];
    const next = last === undefined ? 1 : Number(last.id) + 1;
    await fs.link(this.pathClean, this.revisionPath({ id: String(next), timestamp: isoDate(mtime) }));
  }

  private async pruneRevisions(keep: PyInt): Promise<void> {
    const revs = await this.revisions();
    const excess = revs.slice(0, Math.max(0, revs.length - Math.max(0, Number(keep))));
    for (const r of excess) await removeIfExists(this.revisionPath(r));
  }

  private revisionPath(rev: Revision): string {
    return `${this.pathClean}.${rev.id}@${rev.timestamp}Z`;
  }

  /** Upstream's (lvm driver) refusal of anything else touching the data while an import runs. */
  private refuseDuringImport(): void {
    if (this.importing) throw new StoragePoolException(`Import operation in progress on ${this.vid}`);
  }

  private async requireImage(p: string): Promise<void> {
    if (!(await exists(p))) throw new StoragePoolException(`Missing image file: ${p}`);
  }

  /** Leftovers of an import or copy that was interrupted (client gone, daemon killed). */
  private async removeIncompleteImages(): Promise<void> {
    await removeIfExists(this.pathImport);
    const dir = path.dirname(this.base);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    const stems = [this.pathClean, this.pathDirty, this.pathImport].map((p) => path.basename(p) + TEMP_MARK);
    for (const n of names) {
      if (stems.some((s) => n.startsWith(s))) await removeIfExists(path.join(dir, n));
    }
  }

  private async removeAllImages(): Promise<void> {
    await this.removeIncompleteImages();
    await this.pruneRevisions(0);
    await removeIfExists(this.pathClean);
    await removeIfExists(this.pathDirty);
  }
}
