import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import {
  pyRepr,
  QubesException,
  QubesPoolInUseError,
  QubesPoolNotFoundError,
  QubesVolumeNotFoundError,
  QubesVolumeRevisionNotFoundError,
  StoragePoolException,
} from '../model/errors.js';
import type { PyInt } from '../model/validate.js';
import { CloneTokens } from './clone-tokens.js';
import type { Pool, PoolDriver, Volume, VolumeConfig, VolumeOwner } from './driver.js';
import { createCallbackDriver } from './drivers/callback.js';
import { fileDriver, FILE_DRIVER } from './drivers/file.js';
import { kernelDriver, KERNEL_DRIVER } from './drivers/kernel.js';
import { lvmThinDriver } from './drivers/lvm-thin.js';
import { reflinkDriver, REFLINK_DRIVER } from './drivers/reflink.js';
import { reflinkSupported, volumeBytes } from './fsutil.js';

/**
 * In upstream's entry-point order, which is what `admin.pool.ListDrivers` prints. Upstream's
 * zfs driver is left out: Debian's main archive has no ZFS to run it on.
 */
export const BUILTIN_DRIVERS: readonly PoolDriver[] = [
  fileDriver,
  reflinkDriver,
  kernelDriver,
  lvmThinDriver,
  createCallbackDriver({ backends: () => BUILTIN_DRIVERS }),
];

export const DEFAULT_POOL = 'varlibqubes';
export const DEFAULT_KERNEL_POOL = 'linux-kernel';

async function realDir(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch {
    return path.resolve(p);
  }
}

/** What `admin.pool.Info` reports: the pool's config, and its size, usage and container when known. */
export interface PoolInfo {
  config: Record<string, string>;
  size?: number;
  usage?: number;
  /** The name of the first other pool whose directory holds this one's. */
  includedIn?: string;
}

/** What `admin.vm.volume.Info` reports about a volume. */
export interface VolumeInfo {
  pool: string;
  vid: string;
  size: number;
  usage: number;
  rw: boolean;
  source: string | undefined;
  path: string | undefined;
  saveOnStop: boolean;
  snapOnStart: boolean;
  revisionsToKeep: PyInt;
  ephemeral: boolean;
  isOutdated: boolean;
}

/** Runs where upstream fires admin-permission for a new pool: after validation, before the name clash check. */
export type PoolAuthorizer = (name: string, params: Readonly<Record<string, string>>) => void | Promise<void>;

export interface PoolRegistryOptions {
  drivers?: readonly PoolDriver[];
  cloneTokenTtlMs?: number;
  now?: () => number;
}

/**
 * Everything the Admin API needs from storage: pools by name, drivers, the
 * volumes VMs own, and typed answers for the admin.pool.* and admin.vm.volume.*
 * read methods. Payload parsing, wire bodies and argument enforcement that
 * depends on VMs (volume names, halted state) stay in the API layer.
 */
export class PoolRegistry {
  private readonly drivers: Map<string, PoolDriver>;
  private readonly pools = new Map<string, Pool>();
  private readonly volumes = new Set<Volume>();
  readonly cloneTokens: CloneTokens<Volume>;

  constructor(opts: PoolRegistryOptions = {}) {
    this.drivers = new Map((opts.drivers ?? BUILTIN_DRIVERS).map((d) => [d.name, d]));
    this.cloneTokens = new CloneTokens<Volume>({
      ...(opts.cloneTokenTtlMs !== undefined ? { ttlMs: opts.cloneTokenTtlMs } : {}),
      ...(opts.now !== undefined ? { now: opts.now } : {}),
    });
  }

  // ---- drivers ----

  driverNames(): string[] {
    return [...this.drivers.keys()];
  }

  /** The drivers with their parameters, in registration order (upstream's entry-point order). */
  driverList(): PoolDriver[] {
    return [...this.drivers.values()];
  }

  // ---- pools ----

  poolNames(): string[] {
    return [...this.pools.keys()];
  }

  hasPool(name: string): boolean {
    return this.pools.has(name);
  }

  getPool(name: string): Pool {
    const pool = this.pools.get(name);
    if (pool === undefined) throw new QubesException(`Unknown storage pool ${name}`);
    return pool;
  }

  /** Registers a pool from qubes.xml's `<pool>` attributes (name, driver, params), without setup. */
  loadPool(attrs: Readonly<Record<string, string>>): Pool {
    const { name, driver, ...params } = attrs;
    if (!name) throw new QubesException('No pool name for pool');
    if (!driver) throw new QubesException(`No driver specified for pool ${name}`);
    const pool = this.driver(driver, name).create(name, params);
    this.pools.set(name, pool);
    return pool;
  }

  /** The `<pool>` attributes for qubes.xml. */
  poolXml(name: string): Record<string, string> {
    return this.getPool(name).config();
  }

  /**
   * First start: `varlibqubes` at the state dir (file-reflink when the
   * filesystem can reflink, else file) and `linux-kernel` at `<state>/vm-kernels`.
   */
  async initDefaultPools(stateDir: string): Promise<void> {
    await fs.mkdir(stateDir, { recursive: true });
    const reflink = await reflinkSupported(stateDir);
    if (!this.pools.has(DEFAULT_POOL)) {
      await this.createPool(reflink ? REFLINK_DRIVER : FILE_DRIVER, DEFAULT_POOL, {
        dir_path: stateDir,
        // Just probed; no need to check twice.
        ...(reflink ? { setup_check: 'False' } : {}),
      });
    }
    if (!this.pools.has(DEFAULT_KERNEL_POOL)) {
      await this.createPool(KERNEL_DRIVER, DEFAULT_KERNEL_POOL, {
        dir_path: path.join(stateDir, 'vm-kernels'),
      });
    }
  }

  /** `admin.pool.Info`: the config, then size, usage and containing pool when known. */
  async poolInfo(name: string): Promise<PoolInfo> {
    const pool = this.getPool(name);
    const info: PoolInfo = { config: pool.config() };
    const size = await pool.size();
    if (size !== undefined) info.size = size;
    const usage = await pool.usage();
    if (usage !== undefined) info.usage = usage;
    const container = await this.includedIn(pool);
    if (container !== undefined) info.includedIn = container.name;
    return info;
  }

  /** `admin.pool.UsageDetails`. */
  async usageDetails(name: string): Promise<Record<string, number>> {
    return this.getPool(name).usageDetails();
  }

  /** The first other pool whose directory contains this pool's directory. */
  async includedIn(pool: Pool): Promise<Pool | undefined> {
    if (pool.dirPath === undefined) return undefined;
    const mine = await realDir(pool.dirPath);
    for (const other of this.pools.values()) {
      if (other === pool || other.dirPath === undefined) continue;
      const theirs = await realDir(other.dirPath);
      const rel = path.relative(theirs, mine);
      if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) return other;
    }
    return undefined;
  }

  /**
   * `admin.pool.Add` once the API parsed the payload. `authorize` runs where
   * upstream fires admin-permission: after validation, before the name clash check.
   */
  async addPool(
    driver: string,
    name: string,
    params: Readonly<Record<string, string>>,
    authorize?: PoolAuthorizer,
  ): Promise<Pool> {
    this.checkParams(driver, params);
    await authorize?.(name, params);
    if (this.pools.has(name)) throw new QubesPoolInUseError(`Storage pool is in use: ${pyRepr(name)}`);
    return this.createPool(driver, name, params);
  }

  /** Validates, builds, sets up and registers a pool; nothing is registered if setup fails. */
  async createPool(driver: string, name: string, params: Readonly<Record<string, string>>): Promise<Pool> {
    if (this.pools.has(name)) throw new QubesException(`pool named ${name} already exists \n`);
    this.checkParams(driver, params);
    const pool = this.driver(driver, name).create(name, params);
    await pool.setup();
    this.pools.set(name, pool);
    return pool;
  }

  /**
   * `admin.pool.Remove`. `defaults` holds the global default_pool* properties
   * in upstream's order (default_pool, _kernel, _private, _root, _volatile).
   */
  async removePool(name: string, defaults: Readonly<Record<string, string | undefined>> = {}): Promise<void> {
    const pool = this.getPool(name);
    for (const v of this.volumes) {
      if (v.pool === pool) throw new QubesPoolInUseError(`Storage pool is in use: ${pyRepr(name)}`);
    }
    for (const [prop, value] of Object.entries(defaults)) {
      if (value === name) throw new QubesPoolInUseError(`Storage pool is in use: set as ${prop}`);
    }
    await pool.destroy();
    this.pools.delete(name);
    this.cloneTokens.revokeWhere((v) => v.pool === pool);
  }

  /** `admin.pool.Set.revisions_to_keep` (payload already parsed and checked by the API). */
  setPoolRevisionsToKeep(name: string, value: PyInt): void {
    this.getPool(name).setRevisionsToKeep(value);
  }

  /** `admin.pool.Set.ephemeral_volatile`. */
  setPoolEphemeralVolatile(name: string, value: boolean): void {
    this.getPool(name).setEphemeralVolatile(value);
  }

  /** `admin.pool.volume.List`: the pool's volume ids. */
  async poolVolumeIds(name: string): Promise<string[]> {
    return (await this.getPool(name).listVolumes()).map((v) => v.vid);
  }

  // ---- volumes ----

  /** Builds a VM's volume object from its config (qubes.xml load or VM creation). */
  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume {
    const volume = this.getPool(config.pool).initVolume(owner, config);
    this.volumes.add(volume);
    return volume;
  }

  /** Drops a volume object without touching its data. */
  forgetVolume(volume: Volume): void {
    this.volumes.delete(volume);
    volume.pool.forgetVolume(volume);
    this.cloneTokens.revokeWhere((v) => v === volume);
  }

  /** `admin.vm.volume.Info`, read in upstream's order (size, usage, then is_outdated). */
  async volumeInfo(volume: Volume): Promise<VolumeInfo> {
    return {
      pool: volume.pool.name,
      vid: volume.vid,
      size: await volume.size(),
      usage: await volume.usage(),
      rw: volume.rw,
      source: volume.source,
      path: volume.path,
      saveOnStop: volume.saveOnStop,
      snapOnStart: volume.snapOnStart,
      revisionsToKeep: volume.revisionsToKeep,
      ephemeral: volume.ephemeral,
      isOutdated: await volume.isOutdated(),
    };
  }

  /** `admin.vm.volume.ListSnapshots`: revision ids, oldest first. */
  async snapshotIds(volume: Volume): Promise<string[]> {
    const revs = await volume.revisions();
    return [...revs]
      .sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0))
      .map((r) => r.id);
  }

  /** `admin.vm.volume.Revert` (revision name already checked by the API). */
  async revert(volume: Volume, revision: string): Promise<void> {
    if (!(await volume.revisions()).some((r) => r.id === revision)) {
      throw new QubesVolumeRevisionNotFoundError(revision);
    }
    await volume.revert(revision);
  }

  /** `admin.vm.volume.Resize`; the API layer then runs qubes.ResizeDisk in a running VM. */
  async resize(volume: Volume, size: PyInt): Promise<void> {
    await volume.resize(volumeBytes(size));
  }

  /** `admin.vm.volume.Clear`: an import of zeros of the current size. */
  async clear(volume: Volume): Promise<void> {
    await volume.importBegin(await volume.size());
    await volume.importEnd(true);
  }

  /** `admin.vm.volume.CloneFrom`: a single-use token granting a copy of `volume`. */
  cloneFrom(volume: Volume): string {
    return this.cloneTokens.issue(volume);
  }

  /** `admin.vm.volume.CloneTo`: spends the token (even if the copy then fails), copies into `dst`. */
  async cloneTo(dst: Volume, token: string): Promise<Volume> {
    const src = this.cloneTokens.consume(token);
    if (this.pools.get(src.pool.name) !== src.pool) throw new QubesPoolNotFoundError(src.pool.name);
    if (!this.volumes.has(src)) throw new QubesVolumeNotFoundError(src.vid);
    await this.importVolume(dst, src);
    return src;
  }

  /** Copies `src`'s committed data into `dst` (reflink when both share a reflink filesystem). */
  async importVolume(dst: Volume, src: Volume): Promise<void> {
    if (src.isRunning() && src.revisionsToKeep === -1 && src.saveOnStop && !src.snapOnStart) {
      throw new StoragePoolException(`Volume ${src.vid} must be stopped before importing its data`);
    }
    await dst.importVolume(src);
  }

  // ---- a VM's volumes as a whole ----

  /** Creates all volumes on disk; on any failure removes what was created and rethrows. */
  async createVolumes(volumes: Iterable<Volume>): Promise<void> {
    const all = [...volumes];
    const done: Volume[] = [];
    try {
      for (const v of all) {
        await v.create();
        done.push(v);
      }
    } catch (err) {
      for (const v of done) await v.remove().catch(() => undefined);
      // They belong to no qube now: a pool's volume list must not show them (the one that failed did).
      for (const v of all) this.forgetVolume(v);
      throw err;
    }
  }

  /**
   * Prepares volumes for a VM start (snapshots, dirty copies, fresh volatile);
   * if one fails, the ones already started are stopped again.
   */
  async startVolumes(volumes: Iterable<Volume>): Promise<void> {
    const list = [...volumes];
    for (const v of list) {
      if (v.source === undefined) continue;
      const src = await v.pool.getVolume(v.source);
      if (src?.isRunning() && src.revisionsToKeep === -1 && src.saveOnStop && !src.snapOnStart) {
        throw new StoragePoolException(`Volume ${src.vid} is running`);
      }
    }
    const started: Volume[] = [];
    try {
      for (const v of list) {
        await v.start();
        started.push(v);
      }
    } catch (err) {
      for (const v of started.reverse()) await v.stop().catch(() => undefined);
      throw err;
    }
  }

  /** Commits or discards each volume after the VM stopped; tries all, then throws the first error. */
  async stopVolumes(volumes: Iterable<Volume>): Promise<void> {
    let first: unknown;
    for (const v of volumes) {
      try {
        await v.stop();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }

  async verifyVolumes(volumes: Iterable<Volume>): Promise<void> {
    for (const v of volumes) await v.verify();
  }

  /** Deletes the volumes' data (VM removal); errors on one volume do not keep the others. */
  async removeVolumes(volumes: Iterable<Volume>): Promise<void> {
    let first: unknown;
    for (const v of volumes) {
      try {
        if (v.isRunning()) await v.stop();
        await v.remove();
      } catch (err) {
        first ??= err;
      }
      this.forgetVolume(v);
    }
    if (first !== undefined) throw first;
  }

  private driver(name: string, pool: string): PoolDriver {
    const d = this.drivers.get(name);
    if (d === undefined) throw new QubesException(`No driver ${name} for pool ${pool}`);
    return d;
  }

  private checkParams(driver: string, params: Readonly<Record<string, string>>): void {
    const d = this.driver(driver, '');
    const known = new Set(d.params.map((p) => p.name));
    if (Object.keys(params).some((k) => !known.has(k)))
      throw new QubesException('Unexpected driver options found');
    const missing = d.params.filter((p) => p.required && !(p.name in params)).map((p) => p.name);
    if (missing.length > 0) throw new QubesException(`missing required driver options: ${missing.join(' ')}`);
  }
}
