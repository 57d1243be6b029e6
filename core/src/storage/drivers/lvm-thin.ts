import { createReadStream } from 'node:fs';

import { StoragePoolException } from '../../model/errors.js';
import type { PyInt } from '../../model/validate.js';
import type {
  BlockDevice,
  Pool,
  PoolDriver,
  Revision,
  Volume,
  VolumeConfig,
  VolumeOwner,
} from '../driver.js';
import { isoDate } from '../fsutil.js';
import { writeSparse } from '../importer.js';
import { Mutex } from '../lock.js';
import { checkRevisionsToKeep, pyBool, requireParam, revisionPoolParams } from '../params.js';
import { ConfiguredVolume } from '../configured-volume.js';
import { listLvs, type LvTable, mapperPath, runLvm } from './lvm-commands.js';

export const LVM_THIN_DRIVER = 'lvm_thin';

const REVISION_SUFFIX = '-back';

/** `<ts>-back` revision ids of `vid`, by the LV names upstream gives them (`<vid>-<ts>-back`). */
export function revisionsOf(vid: string, table: LvTable): Revision[] {
  const prefix = `${vid}-`;
  const revs: Revision[] = [];
  for (const lv of table.keys()) {
    if (!lv.startsWith(prefix) || !lv.endsWith(REVISION_SUFFIX)) continue;
    const id = lv.slice(prefix.length);
    // `vm-a-b-root-…` also starts with `vm-a-root-`'s prefix only if the names nest; a real
    // revision id has exactly one dash.
    if (!/^\d+-back$/.test(id)) continue;
    revs.push({ id, timestamp: isoDate(Number(id.slice(0, -REVISION_SUFFIX.length))) });
  }
  return revs.sort((a, b) => revisionSeconds(a) - revisionSeconds(b));
}

function revisionSeconds(rev: Revision): number {
  return Number(rev.id.slice(0, -REVISION_SUFFIX.length));
}

/** The LV holding a volume's committed data: the vid itself, else its newest revision. */
export function currentVid(vid: string, table: LvTable): string {
  if (table.has(vid)) return vid;
  const last = revisionsOf(vid, table).at(-1);
  return last === undefined ? vid : `${vid}-${last.id}`;
}

/**
 * A pool in an existing LVM thin pool, upstream's default storage. Volume
 * `<vg>/vm-<vm>-<volume>` holds the committed data; a running VM writes
 * `-snap` (a thin snapshot, committed or dropped at stop), imports go to
 * `-import`, and each commit keeps the replaced data as `-<epoch>-back`.
 */
export class ThinPool implements Pool {
  readonly driver = LVM_THIN_DRIVER;
  readonly dirPath = undefined;
  readonly volumeGroup: string;
  readonly thinPool: string;
  private revisions: PyInt;
  /** What config() prints: the parameter as given, as upstream's Pool keeps it, until a Set. */
  private revisionsText: string;
  private ephemeral: boolean;
  private readonly volumes = new Map<string, ThinVolume>();
  /** The last `lvs` seen, for the properties that are read synchronously (path, block device). */
  private table: LvTable = new Map();

  constructor(
    readonly name: string,
    params: Readonly<Record<string, string>>,
  ) {
    this.volumeGroup = requireParam(params, 'volume_group', LVM_THIN_DRIVER);
    this.thinPool = requireParam(params, 'thin_pool', LVM_THIN_DRIVER);
    const common = revisionPoolParams(params);
    this.ephemeral = common.ephemeralVolatile;
    this.revisions = common.revisionsToKeep;
    this.revisionsText = common.revisionsText;
  }

  /** `<vg>/<thin pool>`, the LV every volume of this pool is created in. */
  get poolId(): string {
    return `${this.volumeGroup}/${this.thinPool}`;
  }

  get revisionsToKeep(): PyInt {
    return this.revisions;
  }

  get ephemeralVolatile(): boolean {
    return this.ephemeral;
  }

  get lastTable(): LvTable {
    return this.table;
  }

  /** Reads `lvs` again; every operation that changes LVs calls it before deciding anything. */
  async refresh(): Promise<LvTable> {
    this.table = await listLvs();
    return this.table;
  }

  setRevisionsToKeep(value: PyInt): void {
    checkRevisionsToKeep(value);
    this.revisions = value;
    this.revisionsText = String(value);
  }

  setEphemeralVolatile(value: boolean): void {
    this.ephemeral = value;
  }

  config(): Record<string, string> {
    return {
      name: this.name,
      volume_group: this.volumeGroup,
      thin_pool: this.thinPool,
      driver: this.driver,
      revisions_to_keep: this.revisionsText,
      ephemeral_volatile: pyBool(this.ephemeral),
    };
  }

  /** Upstream does not create the thin pool; it must exist and be one. */
  async setup(): Promise<void> {
    const info = (await this.refresh()).get(this.poolId);
    if (info === undefined) throw new StoragePoolException(`Thin pool ${this.poolId} does not exist`);
    if (info.attr[0] !== 't') throw new StoragePoolException(`Volume ${this.poolId} is not a thin pool`);
  }

  async destroy(): Promise<void> {
    // The thin pool belongs to the administrator; volumes go with their VMs.
  }

  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume {
    const vid = config.vid ?? `${this.volumeGroup}/vm-${owner.name}-${config.name}`;
    const volume = new ThinVolume(this, config.name, vid, {
      ...config,
      revisionsToKeep: config.revisionsToKeep ?? this.revisions,
    });
    this.volumes.set(vid, volume);
    return volume;
  }

  forgetVolume(volume: Volume): void {
    if (this.volumes.get(volume.vid) === volume) this.volumes.delete(volume.vid);
  }

  async listVolumes(): Promise<Volume[]> {
    const table = await this.refresh();
    const out: Volume[] = [];
    for (const [vid, info] of table) {
      if (!vid.startsWith(`${this.volumeGroup}/`) || info.poolLv !== this.thinPool) continue;
      // -snap and -import are a running VM's or an import's working copies, -back old revisions.
      if (/-(snap|import|back)$/.test(vid)) continue;
      const v = await this.getVolume(vid);
      if (v !== undefined) out.push(v);
    }
    return out;
  }

  async getVolume(vid: string): Promise<Volume | undefined> {
    // Like upstream, a vid with no VM's volume gets a bare object (enough to read or copy it).
    return (
      this.volumes.get(vid) ??
      new ThinVolume(this, vid, vid, {
        name: vid,
        pool: this.name,
        rw: false,
        saveOnStop: false,
        snapOnStart: false,
      })
    );
  }

  async size(): Promise<number | undefined> {
    return (await this.refresh()).get(this.poolId)?.size ?? 0;
  }

  async usage(): Promise<number | undefined> {
    return (await this.refresh()).get(this.poolId)?.usage ?? 0;
  }

  async usageDetails(): Promise<Record<string, number>> {
    const info = (await this.refresh()).get(this.poolId);
    return {
      data_size: info?.size ?? 0,
      data_usage: info?.usage ?? 0,
      metadata_size: info?.metadataSize ?? 0,
      metadata_usage: info?.metadataUsage ?? 0,
    };
  }
}

export class ThinVolume extends ConfiguredVolume<ThinPool> implements Volume {
  private readonly lock = new Mutex();
  private running = false;
  /** Taken synchronously at ImportBegin so a second announced import is refused at once. */
  private importing = false;
  readonly vidSnap: string;
  readonly vidImport: string;

  constructor(pool: ThinPool, name: string, vid: string, config: VolumeConfig) {
    super(pool, name, vid, config, { initial: 0 });
    this.vidSnap = `${vid}-snap`;
    this.vidImport = `${vid}-import`;
  }

  /** Upstream's `path`: the device of the committed data (`/dev/mapper/<vg>-<lv>`). */
  get path(): string {
    return mapperPath(currentVid(this.vid, this.pool.lastTable));
  }

  async size(): Promise<number> {
    const table = await this.pool.refresh();
    return this.sizeIn(table);
  }

  /** A running VM's snapshot may have been resized; otherwise the committed LV, else the configured size. */
  private sizeIn(table: LvTable): number {
    if (this.snapOnStart || this.saveOnStop) {
      const snap = table.get(this.vidSnap);
      if (snap !== undefined) return snap.size;
    }
    return table.get(currentVid(this.vid, table))?.size ?? this.configuredSize;
  }

  async usage(): Promise<number> {
    const table = await this.pool.refresh();
    return table.get(currentVid(this.vid, table))?.usage ?? 0;
  }

  async isDirty(): Promise<boolean> {
    return this.saveOnStop && (await this.pool.refresh()).has(this.vidSnap);
  }

  isRunning(): boolean {
    return this.running;
  }

  /** A start makes the `-snap` LV (or, for a volatile volume, the LV itself), and stop() removes it. */
  async hasStartLeftovers(): Promise<boolean> {
    const table = await this.pool.refresh();
    return this.saveOnStop || this.snapOnStart ? table.has(this.vidSnap) : table.has(this.vid);
  }

  /** The snapshot was taken from an LV that is no longer the source's current data. */
  async isOutdated(): Promise<boolean> {
    if (!this.snapOnStart || this.source === undefined) return false;
    const table = await this.pool.refresh();
    const snap = table.get(this.vidSnap);
    if (snap === undefined) return false;
    return snap.origin !== lvName(currentVid(this.source, table));
  }

  create(): Promise<void> {
    return this.lock.run(async () => {
      if (!this.saveOnStop) return;
      if (!(this.configuredSize > 0)) throw new StoragePoolException(`Volume size must be > 0: ${this.vid}`);
      await runLvm({
        op: 'create',
        pool: this.pool.poolId,
        name: lvName(this.vid),
        size: this.configuredSize,
      });
      await this.pool.refresh();
    });
  }

  /** An import cut short by the daemon's death left `-import` behind; upstream would refuse every later import. */
  recover(): Promise<void> {
    return this.lock.run(async () => {
      if (this.importing || !this.saveOnStop) return;
      await this.removeIfExists(this.vidImport, await this.pool.refresh());
    });
  }

  remove(): Promise<void> {
    return this.lock.run(async () => {
      this.pool.forgetVolume(this);
      this.running = false;
      this.importing = false;
      let table = await this.pool.refresh();
      await this.removeIfExists(this.vidSnap, table);
      await this.removeIfExists(this.vidImport, table);
      for (const r of revisionsOf(this.vid, table)) await this.removeIfExists(`${this.vid}-${r.id}`, table);
      table = await this.pool.refresh();
      await this.removeIfExists(this.vid, table);
      await this.pool.refresh();
    });
  }

  start(): Promise<void> {
    return this.lock.run(async () => {
      this.refuseDuringImport();
      const table = await this.pool.refresh();
      try {
        if (this.snapOnStart || this.saveOnStop) {
          if (!this.saveOnStop || !table.has(this.vidSnap)) {
            if (this.snapshotsDisabled) await this.removeRevisions(revisionsOf(this.vid, table));
            else await this.snapshot(table);
          } else {
            // A VM that was not cleanly stopped: keep writing its snapshot.
            const info = table.get(this.vidSnap);
            if (info !== undefined && info.attr[4] !== 'a')
              await runLvm({ op: 'activate', lv: this.vidSnap });
          }
        } else {
          const size = this.sizeIn(table);
          await this.removeIfExists(currentVid(this.vid, table), table);
          await runLvm({ op: 'create', pool: this.pool.poolId, name: lvName(this.vid), size });
        }
      } finally {
        await this.pool.refresh();
      }
      this.running = true;
    });
  }

  stop(): Promise<void> {
    return this.lock.run(async () => {
      try {
        const table = await this.pool.refresh();
        if (this.saveOnStop) {
          if (!this.snapshotsDisabled) await this.commit(this.vidSnap, false, table);
        } else if (this.snapOnStart) {
          await this.removeIfExists(this.vidSnap, table);
        } else {
          // A volatile volume grown while running starts at that size next time.
          this.configuredSize = this.sizeIn(table);
          await this.removeIfExists(this.vid, table);
        }
      } finally {
        await this.pool.refresh();
      }
      this.running = false;
    });
  }

  async verify(): Promise<void> {
    if (!this.saveOnStop && !this.snapOnStart) return;
    const table = await this.pool.refresh();
    const vid = currentVid(this.source ?? this.vid, table);
    if (!table.has(vid)) throw new StoragePoolException(`volume ${vid} missing`);
  }

  resize(size: number): Promise<void> {
    return this.lock.run(async () => {
      if (!this.rw) throw new StoragePoolException(`Can not resize readonly volume ${this.vid}`);
      const table = await this.pool.refresh();
      if (size === this.sizeIn(table)) return;
      try {
        if (table.has(this.vidSnap) && (this.snapOnStart || this.saveOnStop)) {
          await runLvm({ op: 'resize', lv: this.vidSnap, size });
        } else if (this.saveOnStop && table.has(this.vidImport)) {
          await runLvm({ op: 'resize', lv: this.vidImport, size });
        } else if (this.saveOnStop && !this.snapOnStart) {
          await runLvm({ op: 'resize', lv: currentVid(this.vid, table), size });
        }
        this.configuredSize = size;
      } finally {
        await this.pool.refresh();
      }
    });
  }

  async revisions(): Promise<Revision[]> {
    return revisionsOf(this.vid, await this.pool.refresh());
  }

  revert(revisionId: string): Promise<void> {
    return this.lock.run(async () => {
      const table = await this.pool.refresh();
      if (this.saveOnStop && table.has(this.vidSnap)) {
        throw new StoragePoolException(`Cannot revert dirty volume ${this.vid}, stop the qube first`);
      }
      this.refuseDuringImport(table);
      const old = `${this.vid}-${revisionId}`;
      if (!table.has(old)) throw new StoragePoolException(`Volume ${this.vid} has no /dev/${old}`);
      try {
        if (table.has(this.vid)) await runLvm({ op: 'remove', lv: this.vid });
        await runLvm({ op: 'clone', from: old, to: this.vid });
      } finally {
        await this.pool.refresh();
      }
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
        const table = await this.pool.refresh();
        if (table.has(this.vidSnap)) {
          throw new StoragePoolException(
            `Cannot import data to dirty volume ${this.vid}, stop the qube first`,
          );
        }
        if (table.has(this.vidImport))
          throw new StoragePoolException(`Import operation in progress on ${this.vid}`);
        const target = size ?? this.sizeIn(table);
        await runLvm({ op: 'create', pool: this.pool.poolId, name: lvName(this.vidImport), size: target });
        await this.pool.refresh();
        return { path: `/dev/${this.vidImport}`, size: target };
      } catch (err) {
        this.importing = false;
        throw err;
      }
    });
  }

  importEnd(success: boolean): Promise<void> {
    return this.lock.run(async () => {
      this.importing = false;
      const table = await this.pool.refresh();
      if (!table.has(this.vidImport)) {
        throw new StoragePoolException(`No import operation in progress on ${this.vid}`);
      }
      try {
        if (success) await this.commit(this.vidImport, false, table);
        else await runLvm({ op: 'remove', lv: this.vidImport });
      } finally {
        await this.pool.refresh();
      }
    });
  }

  async importVolume(src: Volume): Promise<void> {
    if (!src.saveOnStop) return;
    await this.lock.run(async () => {
      let table = await this.pool.refresh();
      if (table.has(this.vidSnap)) {
        throw new StoragePoolException(
          `Cannot import to dirty volume ${this.vid} - start and stop a qube to cleanup`,
        );
      }
      this.refuseDuringImport(table);
      try {
        if (src instanceof ThinVolume && src.pool.poolId === this.pool.poolId) {
          // Same thin pool: a thin snapshot of the source's data, no copy.
          await this.commit(currentVid(src.vid, table), true, table);
          return;
        }
        const size = await src.size();
        const srcPath = await src.exportPath();
        await runLvm({ op: 'create', pool: this.pool.poolId, name: lvName(this.vidImport), size });
        table = await this.pool.refresh();
        try {
          await writeSparse(`/dev/${this.vidImport}`, createReadStream(srcPath), size);
        } catch (err) {
          await runLvm({ op: 'remove', lv: this.vidImport });
          throw new StoragePoolException(
            `Failed to import volume ${src.vid}: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        await this.commit(this.vidImport, false, table);
      } finally {
        await this.pool.refresh();
      }
    });
  }

  /** Activates the committed LV (it may have been left inactive at boot) and names its device. */
  async exportPath(): Promise<string> {
    if (!this.saveOnStop) throw new StoragePoolException(`Cannot export: ${this.vid} is not save_on_stop`);
    const table = await this.pool.refresh();
    const vid = currentVid(this.vid, table);
    if (!table.has(vid)) throw new StoragePoolException(`volume ${vid} missing`);
    await runLvm({ op: 'activate', lv: vid });
    return mapperPath(vid);
  }

  async blockDevice(): Promise<BlockDevice> {
    const table = await this.pool.refresh();
    let vid: string;
    if (this.snapOnStart || this.saveOnStop) vid = this.snapshotsDisabled ? this.vid : this.vidSnap;
    else vid = currentVid(this.vid, table);
    return { path: mapperPath(vid), format: 'raw', readOnly: !this.rw };
  }

  /**
   * Makes `from` the committed data: the old committed LV becomes the newest
   * `-<epoch>-back` revision, `from` is renamed (or, with `keep`, snapshotted)
   * to the vid, then revisions beyond revisions_to_keep go.
   */
  private async commit(from: string, keep: boolean, table: LvTable): Promise<void> {
    if (!table.has(from)) return;
    if (table.has(this.vid)) {
      await runLvm({ op: 'rename', from: this.vid, to: `${this.vid}-${this.nextRevisionId(table)}` });
    }
    await runLvm(keep ? { op: 'clone', from, to: this.vid } : { op: 'rename', from, to: this.vid });
    const revs = revisionsOf(this.vid, await this.pool.refresh());
    // Upstream's slice revisions[:-keep or None]: keep 0 drops them all; a keep beyond 2^53 keeps them all.
    const kept = Number(this.revisionsToKeep);
    await this.removeRevisions(revs.slice(0, kept === 0 ? revs.length : -kept));
  }

  /** The current second, or one past the newest revision when two commits fall in the same second. */
  private nextRevisionId(table: LvTable): string {
    const last = revisionsOf(this.vid, table).at(-1);
    const now = Math.trunc(Date.now() / 1000);
    const seconds = last === undefined ? now : Math.max(now, revisionSeconds(last) + 1);
    return `${seconds}${REVISION_SUFFIX}`;
  }

  private async removeRevisions(revs: readonly Revision[]): Promise<void> {
    const table = await this.pool.refresh();
    for (const r of revs) await this.removeIfExists(`${this.vid}-${r.id}`, table);
  }

  /** A fresh thin snapshot for the VM to write: of the source's data (snap_on_start) or of our own. */
  private async snapshot(table: LvTable): Promise<void> {
    await this.removeIfExists(this.vidSnap, table);
    const from = currentVid(this.source ?? this.vid, table);
    await runLvm({ op: 'clone', from, to: this.vidSnap });
  }

  private async removeIfExists(lv: string, table: LvTable): Promise<void> {
    if (table.has(lv)) await runLvm({ op: 'remove', lv });
  }

  private refuseDuringImport(table?: LvTable): void {
    if (this.importing || (this.saveOnStop && table?.has(this.vidImport) === true)) {
      throw new StoragePoolException(`Import operation in progress on ${this.vid}`);
    }
  }
}

function lvName(vid: string): string {
  return vid.slice(vid.indexOf('/') + 1);
}

export const lvmThinDriver: PoolDriver = {
  name: LVM_THIN_DRIVER,
  params: [
    { name: 'revisions_to_keep', required: false },
    { name: 'volume_group', required: true },
    { name: 'thin_pool', required: true },
    { name: 'ephemeral_volatile', required: false },
  ],
  create: (name, params) => new ThinPool(name, params),
};
