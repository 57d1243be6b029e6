import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { StoragePoolException } from '../model/errors.js';
import type { PyInt } from '../model/validate.js';
import { runChecked } from '../run-command.js';

/** st_blocks is always counted in 512-byte units, whatever the filesystem's block size. */
const ST_BLOCK_SIZE = 512;

/** Errors from FICLONE that mean "this pair of files cannot share extents", not a real failure. */
const NO_REFLINK_CODES = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOTTY', 'EBADF', 'ENOSYS']);

export function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

export async function removeIfExists(p: string): Promise<void> {
  await fs.rm(p, { force: true });
}

/** Creates the directory (and parents); a rename into it is only durable once the parent is synced too. */
export async function ensureDir(dir: string): Promise<boolean> {
  const created = await fs.mkdir(dir, { recursive: true });
  return created !== undefined;
}

export async function removeEmptyDir(dir: string): Promise<void> {
  try {
    await fs.rmdir(dir);
  } catch (err) {
    const code = errno(err);
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
}

export async function fsyncPath(p: string): Promise<void> {
  const fh = await fs.open(p, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** rename(2) is atomic, but only survives a crash once the directory entry itself reached the disk. */
export async function renameDurable(from: string, to: string): Promise<void> {
  await fs.rename(from, to);
  await fsyncPath(path.dirname(to));
}

/** Bytes actually allocated on disk: much less than the size for sparse files. */
export async function allocatedBytes(p: string): Promise<number | undefined> {
  try {
    return (await fs.stat(p)).blocks * ST_BLOCK_SIZE;
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

export async function fileSize(p: string): Promise<number | undefined> {
  try {
    return (await fs.stat(p)).size;
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Temporary siblings get this marker so that a crash leaves files a later cleanup can recognise. */
export const TEMP_MARK = '~';

function tempSibling(dst: string): string {
  return `${dst}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
}

/**
 * Builds a file next to `dst` and only then renames it over `dst`, so readers
 * (and a crash) see either the old file or the complete new one.
 */
export async function replaceFile(dst: string, build: (tmp: string) => Promise<void>): Promise<void> {
  await ensureDir(path.dirname(dst));
  const tmp = tempSibling(dst);
  try {
    await build(tmp);
    await fsyncPath(tmp);
    await renameDurable(tmp, dst);
  } catch (err) {
    await removeIfExists(tmp);
    throw err;
  }
}

/**
 * A volume size in bytes as a file or LV can take it. No truncate goes past 2^53 here, and
 * upstream fails on such a size without a reply (its int64 or its file system refuses it).
 */
export function volumeBytes(size: PyInt): number {
  if (typeof size === 'bigint') throw new StoragePoolException(`Volume size too large: ${size}`);
  return size;
}

export async function createSparseFile(dst: string, size: number): Promise<void> {
  await replaceFile(dst, async (tmp) => {
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
  });
}

export async function resizeFile(p: string, size: number): Promise<void> {
  const fh = await fs.open(p, 'r+');
  try {
    await fh.truncate(size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export type CopyMethod = 'reflink' | 'copy';

async function tryReflink(src: string, dst: string): Promise<boolean> {
  try {
    await fs.copyFile(src, dst, fsc.COPYFILE_FICLONE_FORCE | fsc.COPYFILE_EXCL);
    return true;
  } catch (err) {
    if (NO_REFLINK_CODES.has(errno(err) ?? '')) return false;
    throw err;
  }
}

/**
 * A sparse copy: cp finds the holes with SEEK_DATA/SEEK_HOLE instead of reading
 * gigabytes of zeros, which Node cannot do on its own.
 */
async function sparseCopy(src: string, dst: string): Promise<void> {
  try {
    await runChecked('cp', ['--sparse=always', '--reflink=never', '--', src, dst]);
  } catch (e) {
    throw new StoragePoolException(e instanceof Error ? e.message : String(e));
  }
}

export interface CopyOptions {
  /** Resize the copy to this many bytes. */
  size?: number;
}

/**
 * Gives `dst` the data of `src` as a new inode: a reflink (instant, shares
 * extents) when the filesystem can, else a hole-preserving copy. The copy is
 * built under a temporary name, so `dst` never holds partial data.
 */
export async function copyImage(src: string, dst: string, opts: CopyOptions = {}): Promise<CopyMethod> {
  let method: CopyMethod = 'copy';
  await replaceFile(dst, async (tmp) => {
    if (opts.size === 0) {
      await fs.writeFile(tmp, '', { flag: 'wx', mode: 0o600 });
      return;
    }
    if (await tryReflink(src, tmp)) method = 'reflink';
    else await sparseCopy(src, tmp);
    if (opts.size !== undefined) await resizeFile(tmp, opts.size);
  });
  return method;
}

/** Whether files in `dir` can be reflinked to each other (probe with two scratch files). */
export async function reflinkSupported(dir: string): Promise<boolean> {
  const a = tempSibling(path.join(dir, '.reflink-probe'));
  const b = tempSibling(path.join(dir, '.reflink-probe'));
  try {
    // An empty file could be "cloned" trivially by some filesystems.
    await fs.writeFile(a, 'foo', { flag: 'wx', mode: 0o600 });
    return await tryReflink(a, b);
  } finally {
    await removeIfExists(a);
    await removeIfExists(b);
  }
}

/** Upstream's timestamp format for revisions: ISO 8601 in UTC, seconds precision, no zone suffix. */
export function isoDate(epochSeconds: number): string {
  return new Date(Math.trunc(epochSeconds) * 1000).toISOString().slice(0, 19);
}
