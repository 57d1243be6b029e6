import { stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { Vm } from '../model/vm.js';
import type { VmStorage } from '../storage/vm-storage.js';

/** One file of a VM in the backup: `vm<qid>/<name>` inside the archive. */
export interface FileToBackup {
  readonly name: string;
  /** What the summary and progress count: disk usage, as upstream counts it. */
  readonly size: number;
  /** The file to read when the backup runs; null for the empty placeholder. */
  source(): Promise<string | null>;
}

export interface VmToBackup {
  readonly vm: Vm;
  /** `vm<qid>/`, the VM's directory in the archive. */
  readonly subdir: string;
  readonly files: readonly FileToBackup[];
  readonly size: number;
}

/** Upstream's per-VM files besides the volumes, kept in the VM's directory. */
const VM_DIR_FILES = ['firewall.xml', 'notes.txt'];

async function diskUsage(path: string): Promise<number | null> {
  try {
    return (await stat(path)).blocks * 512;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * What upstream's Backup.get_files_to_backup lists for each VM: every
 * save_on_stop volume as `<volume>.img`, then firewall.xml and notes.txt when
 * present, else an empty `empty` file so the VM's directory exists in the
 * archive. dom0 is left out: its user's home is not odysseyd's to back up.
 */
export async function planBackup(vms: readonly Vm[], storage: VmStorage): Promise<VmToBackup[]> {
  const plan: VmToBackup[] = [];
  for (const vm of vms) {
    if (vm.isAdminVm) continue;
    const files: FileToBackup[] = [];
    for (const volume of storage.of(vm).values()) {
      if (!volume.saveOnStop) continue;
      files.push({
        name: `${volume.name}.img`,
        size: await volume.usage(),
        source: () => volume.exportPath(),
      });
    }
    for (const name of VM_DIR_FILES) {
      const path = join(vm.dirPath, name);
      const size = await diskUsage(path);
      if (size !== null) files.push({ name, size, source: () => Promise.resolve(path) });
    }
    if (files.length === 0) files.push({ name: 'empty', size: 0, source: () => Promise.resolve(null) });
    plan.push({
      vm,
      subdir: `vm${vm.qid}/`,
      files,
      size: files.reduce((sum, f) => sum + f.size, 0),
    });
  }
  return plan;
}
