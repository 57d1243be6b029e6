import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The file in a job's work dir that names the archive it is writing. */
const MARKER = 'partial-archive';

/**
 * Where a backup writes its archive until it is complete: a hidden name in
 * the destination's directory, so that a killed daemon never leaves a file
 * that looks like a finished `qubes-<time>` backup, and the final rename
 * stays on one file system.
 */
export function partialPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}.partial`);
}

/**
 * Creates a job's work dir under `root` and records the partial archive in
 * it, so that a daemon killed mid-backup can remove both after its restart.
 */
export async function createWorkDir(root: string, partial: string): Promise<string> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(root, 'odyssey-backup-'));
  await writeFile(join(dir, MARKER), partial, { mode: 0o600 });
  return dir;
}

/**
 * Removes what killed backups left under `root` (their work dirs) and the
 * partial archives they name. Only the state dir's one daemon calls it, at
 * start-up, before any backup runs.
 */
export async function removeBackupLeftovers(root: string): Promise<void> {
  let jobs: string[];
  try {
    jobs = await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  for (const job of jobs) {
    const partial = await readFile(join(root, job, MARKER), 'utf8').catch(() => null);
    if (partial !== null) await unlink(partial).catch(() => undefined);
    await rm(join(root, job), { recursive: true, force: true });
  }
}
