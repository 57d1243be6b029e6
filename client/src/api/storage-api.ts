import type { Caller } from './caller.js';
import { keyValueLines, lines } from './caller.js';

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

  async info(pool: string): Promise<Record<string, string>> {
    return keyValueLines(await this.call('admin.pool.Info', 'dom0', pool));
  }

  async usageDetails(pool: string): Promise<Record<string, string>> {
    return keyValueLines(await this.call('admin.pool.UsageDetails', 'dom0', pool));
  }

  async add(driver: string, name: string, options: Record<string, string> = {}): Promise<void> {
    const payload = [`name=${name}`, ...Object.entries(options).map(([k, v]) => `${k}=${v}`)]
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

  async setRevisionsToKeep(pool: string, count: number): Promise<void> {
    await this.call('admin.pool.Set.revisions_to_keep', 'dom0', pool, String(count));
  }

  async setEphemeralVolatile(pool: string, value: boolean): Promise<void> {
    await this.call('admin.pool.Set.ephemeral_volatile', 'dom0', pool, value ? 'True' : 'False');
  }
}

/** A qube's volumes (root, private, volatile, kernel). */
export class VolumeApi {
  constructor(private readonly call: Caller) {}

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

  /** Grow only; size in bytes. */
  async resize(vm: string, volume: string, size: bigint | number): Promise<void> {
    await this.call('admin.vm.volume.Resize', vm, volume, String(size));
  }

  async clear(vm: string, volume: string): Promise<void> {
    await this.call('admin.vm.volume.Clear', vm, volume);
  }

  /** First half of a volume copy: returns the token to pass to `cloneTo` on the destination. */
  async cloneFrom(vm: string, volume: string): Promise<string> {
    return (await this.call('admin.vm.volume.CloneFrom', vm, volume)).toString('utf8');
  }

  async cloneTo(vm: string, volume: string, token: string): Promise<void> {
    await this.call('admin.vm.volume.CloneTo', vm, volume, token);
  }

  async setRevisionsToKeep(vm: string, volume: string, count: number): Promise<void> {
    await this.call('admin.vm.volume.Set.revisions_to_keep', vm, volume, String(count));
  }

  /**
   * Replaces the volume's content (`data` must be exactly the volume's size). Import is a qrexec service
   * in dom0, not a qubesd.sock method, so this works over QrexecTransport only.
   */
  async importData(vm: string, volume: string, data: Uint8Array): Promise<void> {
    await this.call('admin.vm.volume.Import', vm, volume, data);
  }

  /** As `importData`, resizing the volume to `data`'s length first (`admin.vm.volume.ImportWithSize`). */
  async importDataWithSize(vm: string, volume: string, data: Uint8Array): Promise<void> {
    const payload = Buffer.concat([Buffer.from(`${data.length}\n`), data]);
    await this.call('admin.vm.volume.ImportWithSize', vm, volume, payload);
  }

  async setRw(vm: string, volume: string, rw: boolean): Promise<void> {
    await this.call('admin.vm.volume.Set.rw', vm, volume, rw ? 'True' : 'False');
  }

  async setEphemeral(vm: string, volume: string, ephemeral: boolean): Promise<void> {
    await this.call('admin.vm.volume.Set.ephemeral', vm, volume, ephemeral ? 'True' : 'False');
  }
}
