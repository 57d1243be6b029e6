import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { lvmEnv } from '../../src/storage/drivers/lvm-commands.js';
import { MiB, tempDir } from './helpers.js';

const execFileAsync = promisify(execFile);

function run(cmd: string, args: string[]): Promise<{ stdout: string }> {
  return execFileAsync(cmd, args, { env: lvmEnv() });
}

export interface ThinPoolFixture {
  readonly vg: string;
  readonly thinPool: string;
  cleanup(): Promise<void>;
}

/** lvm's complaint without its usage hint, on one line. */
function reason(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  const text = (e.stderr ?? '').trim() || (e.message ?? String(err));
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('Run `'))
    .join(' / ');
}

/**
 * A volume group on a loop device over a sparse file, with a thin pool in it.
 * The VG name is unique (and has a dash, which /dev/mapper names double), so
 * concurrent runs do not meet. Returns the reason instead when this machine
 * cannot: no lvm2, no loop devices, no device-mapper thin target, not root.
 */
export async function createThinPool(sizeBytes = 512 * MiB): Promise<ThinPoolFixture | string> {
  const base = await tempDir('odyssey-lvm-');
  const img = path.join(base, 'pv.img');
  const vg = `ody-${process.pid}-${randomBytes(3).toString('hex')}`;
  const thinPool = 'tpool';
  let loop: string | undefined;
  let vgMade = false;
  const cleanup = async (): Promise<void> => {
    // Each step runs even if the one before failed: a half-made fixture must not stay behind.
    if (vgMade) await run('lvm', ['vgremove', '--force', '--yes', vg]).catch(() => undefined);
    if (loop !== undefined) {
      await run('lvm', ['pvremove', '--force', '--yes', loop]).catch(() => undefined);
      await run('losetup', ['--detach', loop]).catch(() => undefined);
    }
    await fs.rm(base, { recursive: true, force: true });
  };
  try {
    if (process.getuid?.() !== 0) throw new Error('LVM needs root');
    const fh = await fs.open(img, 'w');
    await fh.truncate(sizeBytes);
    await fh.close();
    loop = (await run('losetup', ['--find', '--show', img])).stdout.trim();
    await run('lvm', ['pvcreate', '--yes', loop]);
    await run('lvm', ['vgcreate', vg, loop]);
    vgMade = true;
    await run('lvm', [
      'lvcreate',
      '--type',
      'thin-pool',
      '--size',
      `${sizeBytes / 2}B`,
      '--name',
      thinPool,
      vg,
    ]);
  } catch (err) {
    await cleanup();
    return `no LVM thin pool on a loop device here: ${reason(err)}`;
  }
  return { vg, thinPool, cleanup };
}

/** lvs rows of one VG: LV name to origin ('' when none). */
export async function lvsOf(vg: string): Promise<Map<string, string>> {
  const { stdout } = await run('lvm', [
    'lvs',
    '--noheadings',
    '--separator',
    '|',
    '-o',
    'lv_name,origin',
    vg,
  ]);
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [name, origin] = line.trim().split('|');
    if (name) out.set(name, origin ?? '');
  }
  return out;
}
