import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** A process as dom0 sees it in its /proc. */
export interface HostProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  /** Real, effective, saved and file-system uid, as /proc/PID/status lists them. */
  readonly uids: readonly number[];
  /** Resident memory (VmRSS), 0 for a kernel thread. */
  readonly rssKiB: number;
  /** The pid namespace it is in (the /proc/PID/ns/pid link), undefined once it is gone. */
  readonly pidNamespace: string | undefined;
}

/** Every process of the host still there when read (one that ends mid-scan is left out). */
export async function hostProcesses(): Promise<HostProcess[]> {
  const found: HostProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = join('/proc', entry);
    try {
      const [cmdline, status, pidNamespace] = await Promise.all([
        readFile(join(dir, 'cmdline'), 'utf8'),
        readFile(join(dir, 'status'), 'utf8'),
        readlink(join(dir, 'ns', 'pid')).catch(() => undefined),
      ]);
      const uidLine = /^Uid:\s*(.*)$/m.exec(status)?.[1] ?? '';
      found.push({
        pid: Number(entry),
        argv: cmdline.split('\0').filter((a) => a !== ''),
        uids: uidLine
          .split(/\s+/)
          .filter((u) => u !== '')
          .map(Number),
        rssKiB: Number(/^VmRSS:\s*(\d+)/m.exec(status)?.[1] ?? 0),
        pidNamespace,
      });
    } catch {
      // Gone between readdir and read.
    }
  }
  return found;
}
