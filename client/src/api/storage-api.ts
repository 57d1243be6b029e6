import type { Caller, Uploader } from './caller.js';
import { keyValueLines, lines } from './caller.js';

/** A value for a boolean setting: booleans go out as `True`/`False`, strings as given (qubesd parses them). */
export type BoolLike = boolean | string;

function boolText(value: BoolLike): string {
  if (typeof value === 'string') return value;
  return value ? 'True' : 'False';
}

/** Storage pools (system-wide, dest dom0). */
export class PoolApi {
  constructor(private readonly call: Caller) {}

  async list(): Promise<string[]> {
    return lines(await this.call('admin.pool.List', 'dom0'));
  }

  /** Driver name → the parameters it accepts. */
  async listDrivers(): Promise<Map<string, string[]>> {
    const drivers = new Map<string, string[]>();
    for (const line of lines(await this.call('admin.pool.ListDrivers', 'dom0'))) {
      const [driver, ...params] = line.split(' ');
      if (driver) drivers.set(driver, params);
    }
    return drivers;
  }

  /** The pool's config (`driver`, `name`, the driver's parameters) plus `size`/`usage` when known. */
  async info(pool: string): Promise<Record<string, string>> {
    return keyValueLines(await this.call('admin.pool.Info', 'dom0', pool));
  }

  /** `data_size`, `data_usage` and driver extras, in bytes (not cached by qubesd either). */
  async usageDetails(pool: string): Promise<Record<string, number>> {
    const result: Record<string, number> = {};
    for (const [key, value] of Object.entries(
      keyValueLines(await this.call('admin.pool.UsageDetails', 'dom0', pool)),
    )) {
      result[key] = Number(value);
    }
    return result;
  }

  /**
   * `admin.pool.Add+<driver>` with `name=<name>\n` then one `k=v\n` line per option, sorted by key as
   * upstream's client sends them.
   */
  async add(
    driver: string,
    name: string,
    options: Record<string, string | number | boolean> = {},
  ): Promise<void> {
    const payload = [
      `name=${name}`,
      ...Object.keys(options)
        .sort()
        .map((k) => `${k}=${String(options[k])}`),
    ]
      .map((l) => `${l}\n`)
      .join('');
    await this.call('admin.pool.Add', 'dom0', driver, payload);
  }

  async remove(pool: string): Promise<void> {
    await this.call('admin.pool.Remove', 'dom0', pool);
  }

  /** Volume ids stored in the pool. */
  async listVolumes(pool: string): Promise<string[]> {
    return lines(await this.call('admin.pool.volume.List', 'dom0', pool));
  }

  /** `-1` disables snapshots; qubesd refuses anything lower. */
  async setRevisionsToKeep(pool: string, count: number | string): Promise<void> {
    await this.call('admin.pool.Set.revisions_to_keep', 'dom0', pool, String(count));
  }

  async setEphemeralVolatile(pool: string, value: BoolLike): Promise<void> {
    await this.call('admin.pool.Set.ephemeral_volatile', 'dom0', pool, boolText(value));
  }
}

export interface VolumeImportOptions {
  /** Bytes `source` delivers. Required with `withSize`; otherwise only the progress total. */
  size?: number | bigint;
  /**
   * `admin.vm.volume.ImportWithSize`: the volume takes `size` as its new size. Without it
   * (`admin.vm.volume.Import`) the data must be exactly the volume's current size.
   */
  withSize?: boolean;
  /** Running count of data bytes sent, and the expected total when known. */
  onProgress?: (sent: number, total: number | undefined) => void;
  /** Aborting hangs up; qubesd then keeps the volume's previous content. */
  signal?: AbortSignal;
}

/** A qube's volumes (root, private, volatile, kernel). */
export class VolumeApi {
  constructor(
    private readonly call: Caller,
    private readonly uploader?: Uploader,
  ) {}

  async list(vm: string): Promise<string[]> {
    return lines(await this.call('admin.vm.volume.List', vm));
  }

  /** `pool vid size usage rw source path save_on_stop snap_on_start revisions_to_keep ephemeral [is_outdated]` */
  async info(vm: string, volume: string): Promise<Record<string, string>> {
    return keyValueLines(await this.call('admin.vm.volume.Info', vm, volume));
  }

  /** Revision ids, oldest first. */
  async listSnapshots(vm: string, volume: string): Promise<string[]> {
    return lines(await this.call('admin.vm.volume.ListSnapshots', vm, volume));
  }

  async revert(vm: string, volume: string, revision: string): Promise<void> {
    await this.call('admin.vm.volume.Revert', vm, volume, revision);
  }

  /** Size in bytes; qubesd refuses to shrink. */
  async resize(vm: string, volume: string, size: bigint | number): Promise<void> {
    await this.call('admin.vm.volume.Resize', vm, volume, String(size));
  }

  /** Empties the volume, keeping its size (the old data may survive as a revision). */
  async clear(vm: string, volume: string): Promise<void> {
    await this.call('admin.vm.volume.Clear', vm, volume);
  }

  /** First half of a volume copy: returns the one-time token to pass to `cloneTo` on the destination. */
  async cloneFrom(vm: string, volume: string): Promise<string> {
    return (await this.call('admin.vm.volume.CloneFrom', vm, volume)).toString('utf8');
  }

  /** Replaces the volume's data with the source of `token`; the token is spent even if this fails. */
  async cloneTo(vm: string, volume: string, token: string): Promise<void> {
    await this.call('admin.vm.volume.CloneTo', vm, volume, token);
  }

  /** `CloneFrom` on the source, then `CloneTo` on the destination (what upstream's `Volume.clone` does). */
  async clone(srcVm: string, srcVolume: string, dstVm: string, dstVolume: string): Promise<void> {
    await this.cloneTo(dstVm, dstVolume, await this.cloneFrom(srcVm, srcVolume));
  }

  async setRevisionsToKeep(vm: string, volume: string, count: number | string): Promise<void> {
    await this.call('admin.vm.volume.Set.revisions_to_keep', vm, volume, String(count));
  }

  /** Only while the qube is halted. */
  async setRw(vm: string, volume: string, rw: BoolLike): Promise<void> {
    await this.call('admin.vm.volume.Set.rw', vm, volume, boolText(rw));
  }

  async setEphemeral(vm: string, volume: string, ephemeral: BoolLike): Promise<void> {
    await this.call('admin.vm.volume.Set.ephemeral', vm, volume, boolText(ephemeral));
  }

  /**
   * Replaces the volume's content with what `source` (a `Readable`, or any async iterable of bytes)
   * yields, streamed with backpressure: memory use does not depend on the size. The qube must be halted.
   * On the socket this is `admin.vm.volume.Import[WithSize]` as odysseyd serves it; over qrexec it is
   * the dom0 service of the same name (which is how upstream's client reaches it from a qube).
   */
  async import(
    vm: string,
    volume: string,
    source: AsyncIterable<Uint8Array | string>,
    options: VolumeImportOptions = {},
  ): Promise<void> {
    if (!this.uploader) throw new TypeError('this client cannot stream payloads');
    const { withSize = false, onProgress, signal } = options;
    if (withSize && options.size === undefined) throw new TypeError('ImportWithSize needs the data size');
    const size = options.size === undefined ? undefined : BigInt(options.size);
    if (size !== undefined && size < 0n) throw new RangeError(`invalid size: ${size}`);
    const total = size === undefined ? undefined : Number(size);
    const method = withSize ? 'admin.vm.volume.ImportWithSize' : 'admin.vm.volume.Import';
    const prefix = withSize ? `${String(size)}\n` : '';
    await this.uploader(method, vm, volume, prefix, source, {
      onProgress: onProgress && ((sent) => onProgress(sent, total)),
      signal,
    });
  }

  /** `import` of an in-memory buffer (`data` must be exactly the volume's size). */
  async importData(vm: string, volume: string, data: Uint8Array): Promise<void> {
    await this.import(vm, volume, oneChunk(data), { size: data.length });
  }

  /** As `importData`, resizing the volume to `data`'s length first (`admin.vm.volume.ImportWithSize`). */
  async importDataWithSize(vm: string, volume: string, data: Uint8Array): Promise<void> {
    await this.import(vm, volume, oneChunk(data), { size: data.length, withSize: true });
  }
}

async function* oneChunk(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}
