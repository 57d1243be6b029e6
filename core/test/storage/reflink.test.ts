import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { StoragePoolException } from '../../src/model/errors.js';
import { copyImage, reflinkSupported } from '../../src/storage/fsutil.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { MiB, mountReflinkFs, owner, sha256File, tempDir } from './helpers.js';

let mount: { dir: string; cleanup: () => Promise<void> } | undefined;
let skipReason = '';

beforeAll(async () => {
  const m = await mountReflinkFs();
  if (typeof m === 'string') {
    skipReason = m;
    console.warn(`skipping reflink tests: ${m}`);
  } else mount = m;
});

afterAll(async () => {
  await mount?.cleanup();
});

async function fsUsed(dir: string): Promise<number> {
  const st = await fs.statfs(dir);
  return st.bsize * (st.blocks - st.bfree);
}

describe('file-reflink on a real reflink filesystem (XFS on a loop device)', { timeout: 120_000 }, () => {
  it('the mount supports reflinks', async (ctx) => {
    if (!mount) return ctx.skip(skipReason);
    expect(await reflinkSupported(mount.dir)).toBe(true);
  });

  it('default pools pick file-reflink there', async (ctx) => {
    if (!mount) return ctx.skip(skipReason);
    const reg = new PoolRegistry();
    const state = path.join(mount.dir, 'state');
    await reg.initDefaultPools(state);
    expect(reg.poolXml('varlibqubes')).toEqual({
      name: 'varlibqubes',
      dir_path: state,
      driver: 'file-reflink',
      revisions_to_keep: '1',
      ephemeral_volatile: 'False',
    });
  });

  it('start, commit and clone share extents instead of copying data', async (ctx) => {
    if (!mount) return ctx.skip(skipReason);
    const reg = new PoolRegistry();
    const dir = path.join(mount.dir, 'pool');
    await reg.addPool('file-reflink', 'r', { dir_path: dir, revisions_to_keep: '2' });
    const tpl = reg.initVolume(owner('tpl', 'vm-templates'), {
      name: 'root',
      pool: 'r',
      size: 256 * MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    const app = reg.initVolume(owner('app'), {
      name: 'root',
      pool: 'r',
      size: 256 * MiB,
      rw: true,
      saveOnStop: false,
      snapOnStart: true,
      source: tpl.vid,
    });
    await tpl.create();
    const clean = path.join(dir, 'vm-templates/tpl/root.img');
    await fs.writeFile(clean, randomBytes(256 * MiB));
    const hash = await sha256File(clean);

    const used0 = await fsUsed(mount.dir);
    await reg.startVolumes([tpl, app]);
    expect(tpl.path).toBe(path.join(dir, 'vm-templates/tpl/root-dirty.img'));
    expect(await sha256File(path.join(dir, 'appvms/app/root-dirty.img'))).toBe(hash);
    await reg.stopVolumes([tpl, app]);
    const clone = reg.initVolume(owner('copy', 'vm-templates'), {
      name: 'root',
      pool: 'r',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await clone.create();
    await reg.cloneTo(clone, reg.cloneFrom(tpl));
    expect(await sha256File(path.join(dir, 'vm-templates/copy/root.img'))).toBe(hash);
    // Two running copies, one revision and one clone of 256 MiB cost (almost) nothing.
    expect((await fsUsed(mount.dir)) - used0).toBeLessThan(16 * MiB);
    expect((await tpl.revisions()).length).toBe(1);
  });

  it('copyImage reports reflink on this filesystem and copy elsewhere', async (ctx) => {
    if (!mount) return ctx.skip(skipReason);
    const a = path.join(mount.dir, 'a.img');
    await fs.writeFile(a, randomBytes(MiB));
    expect(await copyImage(a, path.join(mount.dir, 'b.img'))).toBe('reflink');
    const other = await tempDir();
    try {
      expect(await copyImage(a, path.join(other, 'c.img'))).toBe('copy');
      expect(await sha256File(path.join(other, 'c.img'))).toBe(await sha256File(a));
    } finally {
      await fs.rm(other, { recursive: true, force: true });
    }
  });
});

describe('file-reflink on a filesystem without reflinks', () => {
  it('is refused at pool setup with a clear error on tmpfs', async () => {
    const shm = await tempDir('odyssey-shm-', '/dev/shm');
    try {
      const reg = new PoolRegistry();
      const dir = path.join(shm, 'pool');
      const add = reg.addPool('file-reflink', 'r', { dir_path: dir });
      await expect(add).rejects.toBeInstanceOf(StoragePoolException);
      await expect(reg.addPool('file-reflink', 'r', { dir_path: dir })).rejects.toThrow(
        /cannot make reflink copies.*setup_check=False/,
      );
      expect(reg.hasPool('r')).toBe(false);
      // The directory the failed setup created is gone again.
      await expect(fs.stat(dir)).rejects.toThrow();
      // Opting out of the check works, with copies.
      await reg.addPool('file-reflink', 'r', { dir_path: dir, setup_check: 'False' });
      expect(reg.poolXml('r')['driver']).toBe('file-reflink');
    } finally {
      await fs.rm(shm, { recursive: true, force: true });
    }
  });
});
