import { open, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import type { App } from '../model/app.js';
import { QubesException } from '../model/errors.js';
import type { Vm } from '../model/vm.js';
import { BackupArchive } from './archive.js';
import { createWorkDir, partialPath } from './leftovers.js';
import type { VmToBackup } from './plan.js';
import type { ScryptParams } from './scrypt-file.js';

/** Serialises qubes.xml with per-domain features replaced (QubesXmlWriter). */
export interface BackupXmlSource {
  serializeWithFeatures(features: (vm: Vm) => Iterable<readonly [string, string]>): string;
}

export interface BackupRun {
  readonly app: App;
  readonly plan: readonly VmToBackup[];
  readonly passphrase: Buffer;
  readonly compression: false | string;
  /** A directory (the archive is named qubes-<time> in it) or the archive's path. */
  readonly destinationPath: string;
  /** Where the job's work dir goes (the daemon's is in its state dir, cleaned at start-up). */
  readonly workRoot: string;
  readonly xml: BackupXmlSource;
  readonly scrypt: ScryptParams;
  readonly chunkSize: number;
  readonly signal: AbortSignal;
  /** Percent done, after every piece read (the caller throttles). */
  readonly onProgress: (percent: number) => void;
}

const two = (n: number): string => String(n).padStart(2, '0');

/** Local time as strftime('%Y%m%dT%H%M%S') (`sep` = '-' gives '%Y-%m-%dT%H%M%S'). */
function localStamp(d: Date, sep: '' | '-'): string {
  const date = [d.getFullYear(), two(d.getMonth() + 1), two(d.getDate())].join(sep);
  return `${date}T${two(d.getHours())}${two(d.getMinutes())}${two(d.getSeconds())}`;
}

function headerText(backupId: string, compression: false | string): string {
  return [
    'version=4',
    'encrypted=True',
    `compressed=${compression === false ? 'False' : 'True'}`,
    // Upstream names its default filter even when the backup is not compressed.
    `compression-filter=${compression === false ? 'gzip' : compression}`,
    'hmac-algorithm=scrypt',
    `backup-id=${backupId}`,
    '',
  ].join('\n');
}

/**
 * The backup's own qubes.xml: every domain, with the `backup-content`
 * feature saying which ones the archive holds, and `backup-path` and
 * `backup-size` on those (where the restore finds their files). Preloaded
 * disposable bookkeeping is dropped, the preload maximum kept.
 */
function backupQubesXml(xml: BackupXmlSource, plan: readonly VmToBackup[]): string {
  const entries = new Map(plan.map((e) => [e.vm, e]));
  return xml.serializeWithFeatures((vm) => {
    const entry = entries.get(vm);
    const features = new Map(vm.features.entries());
    features.set('backup-content', entry ? '1' : '');
    if (entry) {
      features.set('backup-path', entry.subdir);
      features.set('backup-size', String(entry.size));
      for (const key of [...features.keys()]) {
        if (key.startsWith('preload-dispvm') && key !== 'preload-dispvm-max') features.delete(key);
      }
    }
    return features.entries();
  });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function archivePath(destination: string, now: Date): Promise<string> {
  if (await isDirectory(destination)) return join(destination, `qubes-${localStamp(now, '-')}`);
  if (!(await isDirectory(dirname(destination)))) {
    throw new QubesException(`ERROR: the backup directory for ${destination} does not exists`);
  }
  return destination;
}

/** Writes the whole archive; resolves with its path. */
export async function runBackup(run: BackupRun): Promise<string> {
  const now = new Date();
  const backupId = `${localStamp(now, '')}-${process.pid}`;
  const qubesXml = backupQubesXml(run.xml, run.plan);
  const target = await archivePath(run.destinationPath, now);
  const partial = partialPath(target);
  const workDir = await createWorkDir(run.workRoot, partial);
  try {
    const out = await open(partial, 'w', 0o600);
    let complete = false;
    try {
      const archive = new BackupArchive(out, {
        passphrase: run.passphrase,
        backupId,
        compression: run.compression,
        scrypt: run.scrypt,
        chunkSize: run.chunkSize,
        workDir,
        signal: run.signal,
      });
      await archive.addHeader(headerText(backupId, run.compression));
      await archive.addFile('qubes.xml', Buffer.from(qubesXml, 'utf8'));
      const total = run.plan.reduce((sum, e) => sum + e.size, 0);
      let done = 0;
      for (const entry of run.plan) {
        let vmDone = 0;
        for (const file of entry.files) {
          // Progress weighs each file by its disk usage, as the total does, so sparse images do not overshoot.
          await archive.addFile(`${entry.subdir}${file.name}`, await file.source(), (read, size) => {
            if (total > 0 && size > 0)
              run.onProgress((100 * (done + vmDone + (file.size * read) / size)) / total);
          });
          vmDone += file.size;
        }
        done += entry.size;
        if (total > 0) run.onProgress((100 * done) / total);
      }
      await archive.finish();
      // Only a complete archive, on disk, takes the name a restore looks for.
      await out.sync();
      complete = true;
    } finally {
      await out.close();
      if (!complete) await unlink(partial).catch(() => undefined);
    }
    await rename(partial, target);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  return target;
}
