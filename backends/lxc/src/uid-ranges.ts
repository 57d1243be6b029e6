import { readFile, readdir, writeFile } from 'node:fs/promises';
import type { RuntimeFiles } from './runtime-files.js';

/** uids per domain: a whole 16-bit range, as /etc/subuid gives a user. */
export const UID_RANGE = 65_536;
/** Above the ranges shadow's useradd hands out from /etc/subuid (100000 onwards), so no user shares one. */
export const FIRST_UID = 1_000_000_000;
const MAX_RANGES = 4096;

/**
 * The host uid range a domain's user namespace maps to: the one it has while defined, else the
 * lowest range no other defined domain holds. Callers serialise defines (core defines one at a time).
 */
export async function uidBaseFor(files: RuntimeFiles, name: string): Promise<number> {
  const own = await readBase(files, name);
  if (own !== undefined) return own;
  const names = await readdir(files.domainsDir()).catch(() => [] as string[]);
  const taken = new Set<number>();
  for (const other of names) {
    const base = await readBase(files, other);
    if (base !== undefined) taken.add(base);
  }
  for (let i = 0; i < MAX_RANGES; i++) {
    const base = FIRST_UID + i * UID_RANGE;
    if (taken.has(base)) continue;
    await writeFile(files.uidBaseFile(name), `${base}\n`);
    return base;
  }
  throw new Error(`all ${MAX_RANGES} uid ranges are taken`);
}

async function readBase(files: RuntimeFiles, name: string): Promise<number | undefined> {
  const text = await readFile(files.uidBaseFile(name), 'utf8').catch(() => undefined);
  const base = text === undefined ? NaN : Number(text.trim());
  return Number.isInteger(base) ? base : undefined;
}
