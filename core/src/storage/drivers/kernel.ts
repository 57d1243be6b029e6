import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { QubesValueError, StoragePoolException } from '../../model/errors.js';
import type { PyInt } from '../../model/validate.js';
import type {
  BlockDevice,
  KernelFiles,
  Pool,
  PoolDriver,
  Revision,
  Volume,
  VolumeConfig,
  VolumeOwner,
} from '../driver.js';
import { errno, exists } from '../fsutil.js';
import { requireParam } from '../params.js';

export const KERNEL_DRIVER = 'linux-kernel';

/**
 * A read-only volume standing for one kernel directory (`<dir>/<version>/`
 * with vmlinuz, initramfs and optionally modules.img). Its vid is the kernel
 * version; for a VM it follows the VM's `kernel` property.
 */
export class KernelVolume implements Volume {
  readonly rw = false;
  readonly saveOnStop = false;
  readonly snapOnStart = false;
  readonly source = undefined;
  readonly revisionsToKeep = 0;
  readonly ephemeral = false;

  constructor(
    readonly pool: LinuxKernelPool,
    readonly name: string,
    private readonly fixedVid: string,
    private readonly kernel?: () => string | undefined,
  ) {}

  get vid(): string {
    return this.kernel ? (this.kernel() ?? '') : this.fixedVid;
  }

  /** undefined when the VM has no dom0-provided kernel. */
  get kernelDir(): string | undefined {
    return this.vid ? path.join(this.pool.dirPath, this.vid) : undefined;
  }

  get path(): string | undefined {
    const dir = this.kernelDir;
    return dir === undefined ? undefined : path.join(dir, 'modules.img');
  }

  setRw(rw: boolean): void {
    if (rw) throw new QubesValueError('LinuxModules supports only read-only volumes');
  }

  setRevisionsToKeep(value: PyInt): void {
    if (value) throw new QubesValueError('LinuxModules supports only revisions_to_keep=0');
  }

  /** Upstream refuses any value here, False included. */
  setEphemeral(): void {
    throw new QubesValueError('LinuxModules does not support setting ephemeral value');
  }

  async size(): Promise<number> {
    return 0;
  }

  async usage(): Promise<number> {
    return 0;
  }

  async isDirty(): Promise<boolean> {
    return false;
  }

  async isOutdated(): Promise<boolean> {
    return false;
  }

  isRunning(): boolean {
    return false;
  }

  async create(): Promise<void> {}

  /** Nothing of a kernel volume is ever half-written by the daemon. */
  async recover(): Promise<void> {}

  async remove(): Promise<void> {}

  /** Starting a VM with a missing kernel must fail before the VMM sees it. */
  async start(): Promise<void> {
    await this.verify();
  }

  async stop(): Promise<void> {}

  /** A kernel volume is read in place: a start leaves nothing. */
  async hasStartLeftovers(): Promise<boolean> {
    return false;
  }

  async verify(): Promise<void> {
    const files = this.kernelPaths();
    if (files !== undefined && !(await exists(files.vmlinuz))) {
      throw new StoragePoolException(`Missing file: ${files.vmlinuz}`);
    }
  }

  async resize(): Promise<void> {
    throw new StoragePoolException(`Can not resize readonly volume ${this.vid}`);
  }

  async revisions(): Promise<Revision[]> {
    return [];
  }

  async revert(): Promise<void> {
    throw new StoragePoolException(`Kernel volume ${this.vid} has no revisions`);
  }

  async importBegin(): Promise<{ path: string; size: number }> {
    throw new StoragePoolException(`Cannot import data: kernel volume ${this.vid} is read-only`);
  }

  async importEnd(): Promise<void> {
    throw new StoragePoolException(`Cannot import data: kernel volume ${this.vid} is read-only`);
  }

  /** Cloning a VM keeps pointing at the same kernel; there is no data to copy. */
  async importVolume(src: Volume): Promise<void> {
    if (!(src instanceof KernelVolume)) {
      throw new StoragePoolException(
        'clone of LinuxModules volume from different volume type is not supported',
      );
    }
  }

  async exportPath(): Promise<string> {
    const p = this.path;
    if (p === undefined) throw new StoragePoolException(`Kernel volume ${this.name} has no kernel set`);
    return p;
  }

  /** Only a kernel that ships modules.img gets a disk. */
  async blockDevice(): Promise<BlockDevice | undefined> {
    const p = this.path;
    if (p === undefined || !(await exists(p))) return undefined;
    return { path: p, format: 'raw', readOnly: true };
  }

  /** Paths the VMM boots from; `modules` only when the directory has modules.img. */
  async kernelFiles(): Promise<KernelFiles | undefined> {
    const files = this.kernelPaths();
    if (files === undefined) return undefined;
    const { modules, ...rest } = files;
    return modules !== undefined && (await exists(modules)) ? files : rest;
  }

  private kernelPaths(): Required<KernelFiles> | undefined {
    const dir = this.kernelDir;
    if (dir === undefined) return undefined;
    return {
      vmlinuz: path.join(dir, 'vmlinuz'),
      initramfs: path.join(dir, 'initramfs'),
      modules: path.join(dir, 'modules.img'),
    };
  }

  config(): VolumeConfig {
    return {
      name: this.name,
      pool: this.pool.name,
      vid: this.vid,
      revisionsToKeep: 0,
      rw: false,
      saveOnStop: false,
      snapOnStart: false,
    };
  }
}

export class LinuxKernelPool implements Pool {
  readonly driver = KERNEL_DRIVER;
  readonly dirPath: string;
  readonly revisionsToKeep = 0;
  private ephemeral = false;

  constructor(
    readonly name: string,
    params: Readonly<Record<string, string>>,
  ) {
    this.dirPath = path.resolve(requireParam(params, 'dir_path', KERNEL_DRIVER));
  }

  get ephemeralVolatile(): boolean {
    return this.ephemeral;
  }

  setRevisionsToKeep(value: PyInt): void {
    if (value) throw new QubesValueError('LinuxKernel supports only revisions_to_keep=0');
  }

  setEphemeralVolatile(value: boolean): void {
    this.ephemeral = value;
  }

  config(): Record<string, string> {
    return { name: this.name, dir_path: this.dirPath, driver: KERNEL_DRIVER };
  }

  async setup(): Promise<void> {}

  async destroy(): Promise<void> {}

  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume {
    if (config.rw) throw new StoragePoolException('LinuxKernel pool supports only read-only volumes');
    if (config.saveOnStop)
      throw new StoragePoolException('LinuxKernel pool does not support save_on_stop=True');
    return new KernelVolume(this, config.name, config.vid ?? '', owner.kernel);
  }

  forgetVolume(): void {
    // Kernel volumes are not tracked: the kernel directories are the list.
  }

  async listVolumes(): Promise<Volume[]> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.dirPath);
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw err;
    }
    return entries.sort().map((v) => new KernelVolume(this, v, v));
  }

  async getVolume(vid: string): Promise<Volume | undefined> {
    return (await this.listVolumes()).find((v) => v.vid === vid);
  }

  async size(): Promise<number | undefined> {
    return undefined;
  }

  async usage(): Promise<number | undefined> {
    return undefined;
  }

  async usageDetails(): Promise<Record<string, number>> {
    return {};
  }
}

export const kernelDriver: PoolDriver = {
  name: KERNEL_DRIVER,
  params: [{ name: 'dir_path', required: true }],
  create: (name, params) => new LinuxKernelPool(name, params),
};
