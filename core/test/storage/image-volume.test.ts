import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { QubesValueError, StoragePoolException } from '../../src/model/errors.js';
import type { Volume } from '../../src/storage/driver.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { allocated, GiB, MiB, owner, sha256File, tempDir } from './helpers.js';

let dir: string;
let reg: PoolRegistry;

beforeEach(async () => {
  dir = await tempDir();
  reg = new PoolRegistry();
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function writeAt(p: string, offset: number, data: Buffer): Promise<void> {
  const fh = await fs.open(p, 'r+');
  await fh.write(data, 0, data.length, offset);
  await fh.close();
}

async function readAt(p: string, offset: number, len: number): Promise<Buffer> {
  const fh = await fs.open(p, 'r');
  const buf = Buffer.alloc(len);
  await fh.read(buf, 0, len, offset);
  await fh.close();
  return buf;
}

async function templateAndApp(driver = 'file', extra: Record<string, string> = {}) {
  await reg.createPool(driver, 'p', {
    dir_path: dir,
    ...(driver === 'file-reflink' ? { setup_check: 'False' } : {}),
    ...extra,
  });
  const tplRoot = reg.initVolume(owner('tpl', 'vm-templates'), {
    name: 'root',
    pool: 'p',
    size: 64 * MiB,
    rw: true,
    saveOnStop: true,
    snapOnStart: false,
  });
  const appRoot = reg.initVolume(owner('app'), {
    name: 'root',
    pool: 'p',
    size: 64 * MiB,
    rw: true,
    saveOnStop: false,
    snapOnStart: true,
    source: tplRoot.vid,
  });
  return { tplRoot, appRoot };
}

describe('image volumes (file driver)', { timeout: 120_000 }, () => {
  it('creates sparse images that occupy almost nothing', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    const v = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'p',
      size: 2 * GiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await v.create();
    const img = path.join(dir, 'appvms/vm1/private.img');
    expect((await fs.stat(img)).size).toBe(2 * GiB);
    expect(await allocated(img)).toBeLessThan(64 * 1024);
    expect(await v.size()).toBe(2 * GiB);
    expect(await v.usage()).toBeLessThan(64 * 1024);
    expect(await reg.volumeInfo(v)).toEqual({
      pool: 'p',
      vid: 'appvms/vm1/private',
      size: 2 * GiB,
      usage: 0,
      rw: true,
      source: undefined,
      path: img,
      saveOnStop: true,
      snapOnStart: false,
      revisionsToKeep: 1,
      ephemeral: false,
      isOutdated: false,
    });
  });

  it('grows and shrinks as upstream does (no safety check since 4.3), keeping the data', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    const v = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'p',
      size: 16 * MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await v.create();
    const img = path.join(dir, 'appvms/vm1/private.img');
    await writeAt(img, 0, Buffer.from('hello'));
    await v.resize(32 * MiB);
    expect(await v.size()).toBe(32 * MiB);
    expect((await readAt(img, 0, 5)).toString()).toBe('hello');
    await v.resize(8 * MiB);
    expect(await v.size()).toBe(8 * MiB);
    expect((await readAt(img, 0, 5)).toString()).toBe('hello');
    expect(v.config().size).toBe(8 * MiB);
  });

  it('grows the running copy in place while the VM runs', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    const v = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'p',
      size: 16 * MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await v.create();
    await v.start();
    await v.resize(20 * MiB);
    expect((await fs.stat(path.join(dir, 'appvms/vm1/private-dirty.img'))).size).toBe(20 * MiB);
    await v.stop();
    expect(await v.size()).toBe(20 * MiB);
  });

  it('snap_on_start: the VM works on a fresh copy of the template, discarded at stop', async () => {
    const { tplRoot, appRoot } = await templateAndApp();
    await tplRoot.create();
    const tplImg = path.join(dir, 'vm-templates/tpl/root.img');
    await writeAt(tplImg, MiB, Buffer.from('template data'));
    const before = await sha256File(tplImg);

    await appRoot.start();
    const devPath = (await appRoot.blockDevice())?.path ?? '';
    expect(devPath).toBe(path.join(dir, 'appvms/app/root-dirty.img'));
    expect((await readAt(devPath, MiB, 13)).toString()).toBe('template data');
    await writeAt(devPath, 0, Buffer.from('app scribble'));
    expect(await appRoot.isOutdated()).toBe(false);
    expect(appRoot.path).toBe(tplImg);

    await appRoot.stop();
    expect(await sha256File(tplImg)).toBe(before);
    await expect(fs.stat(devPath)).rejects.toThrow();

    await appRoot.start();
    expect((await readAt(devPath, 0, 12)).equals(Buffer.alloc(12))).toBe(true);
    await appRoot.stop();
  });

  it('snap_on_start volume becomes outdated when its template commits', async () => {
    const { tplRoot, appRoot } = await templateAndApp();
    await tplRoot.create();
    await appRoot.start();
    await tplRoot.start();
    await tplRoot.stop();
    expect(await appRoot.isOutdated()).toBe(true);
    expect((await reg.volumeInfo(appRoot)).isOutdated).toBe(true);
    await appRoot.stop();
  });

  it('save_on_stop: changes are committed at stop and the old data kept as a revision', async () => {
    const { tplRoot } = await templateAndApp();
    await tplRoot.create();
    const clean = path.join(dir, 'vm-templates/tpl/root.img');
    const dirty = path.join(dir, 'vm-templates/tpl/root-dirty.img');
    const original = await sha256File(clean);

    await tplRoot.start();
    expect(await tplRoot.isDirty()).toBe(true);
    await writeAt(dirty, 0, Buffer.from('v1'));
    // Running VM writes never reach the committed image.
    expect(await sha256File(clean)).toBe(original);
    await tplRoot.stop();
    expect((await readAt(clean, 0, 2)).toString()).toBe('v1');
    const revs = await tplRoot.revisions();
    expect(revs.map((r) => r.id)).toEqual(['1']);
    const ts = revs[0]?.timestamp;
    expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    const names = await fs.readdir(path.dirname(clean));
    expect(names).toContain(`root.img.1@${ts}Z`);
    expect(await sha256File(path.join(path.dirname(clean), `root.img.1@${ts}Z`))).toBe(original);

    // file keeps at most one revision: the next commit prunes the oldest.
    await tplRoot.start();
    await writeAt(dirty, 0, Buffer.from('v2'));
    await tplRoot.stop();
    expect((await tplRoot.revisions()).map((r) => r.id)).toEqual(['2']);
    expect(await reg.snapshotIds(tplRoot)).toEqual(['2']);
  });

  it('reverts to a revision, keeping the current data as a new one', async () => {
    const { tplRoot } = await templateAndApp();
    await tplRoot.create();
    const clean = path.join(dir, 'vm-templates/tpl/root.img');
    const dirty = path.join(dir, 'vm-templates/tpl/root-dirty.img');
    await tplRoot.start();
    await writeAt(dirty, 0, Buffer.from('v1'));
    await tplRoot.stop();
    await reg.revert(tplRoot, '1');
    expect((await readAt(clean, 0, 2)).equals(Buffer.alloc(2))).toBe(true);
    expect((await tplRoot.revisions()).map((r) => r.id)).toEqual(['2']);
    await expect(reg.revert(tplRoot, '7')).rejects.toThrow(/Revision not found/);
    await tplRoot.start();
    await expect(tplRoot.revert('2')).rejects.toThrow(/not cleanly stopped/);
    await tplRoot.stop();
  });

  it('keeps as many revisions as configured (file-reflink, copying fallback)', async () => {
    await reg.createPool('file-reflink', 'p', {
      dir_path: dir,
      setup_check: 'False',
      revisions_to_keep: '3',
    });
    const v = reg.initVolume(owner('s', 'appvms'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    expect(v.revisionsToKeep).toBe(3);
    await v.create();
    for (let i = 0; i < 5; i++) {
      await v.start();
      await v.stop();
    }
    expect((await v.revisions()).map((r) => r.id)).toEqual(['3', '4', '5']);
    v.setRevisionsToKeep(1);
    await v.start();
    await v.stop();
    expect((await v.revisions()).map((r) => r.id)).toEqual(['6']);
    v.setRevisionsToKeep(0);
    await v.start();
    await v.stop();
    expect(await v.revisions()).toEqual([]);
  });

  it('revisions_to_keep=-1 lets the VM write the committed image in place', async () => {
    await reg.createPool('file-reflink', 'p', { dir_path: dir, setup_check: 'False' });
    const v = reg.initVolume(owner('s'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
      revisionsToKeep: -1,
    });
    await v.create();
    const clean = path.join(dir, 'appvms/s/private.img');
    const ino = (await fs.stat(clean)).ino;
    await v.start();
    expect((await fs.stat(path.join(dir, 'appvms/s/private-dirty.img'))).ino).toBe(ino);
    await v.stop();
    expect((await fs.stat(clean)).ino).toBe(ino);
    expect(await v.revisions()).toEqual([]);
  });

  it('volatile volumes start empty every time and vanish at stop', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    const v = reg.initVolume(owner('vm1'), {
      name: 'volatile',
      pool: 'p',
      size: 10 * GiB,
      rw: true,
      saveOnStop: false,
      snapOnStart: false,
    });
    await v.create();
    const dirty = path.join(dir, 'appvms/vm1/volatile-dirty.img');
    await v.start();
    expect((await fs.stat(dirty)).size).toBe(10 * GiB);
    await writeAt(dirty, 0, Buffer.from('junk'));
    await v.stop();
    await expect(fs.stat(dirty)).rejects.toThrow();
    await v.start();
    expect((await readAt(dirty, 0, 4)).equals(Buffer.alloc(4))).toBe(true);
    await v.stop();
    expect(v.config().revisionsToKeep).toBe(0);
  });

  it('file pool refuses more than one revision with a StoragePoolException', async () => {
    const pool = await reg.createPool('file', 'p', { dir_path: dir });
    expect(() => reg.setPoolRevisionsToKeep('p', 2)).toThrow(StoragePoolException);
    expect(() => reg.setPoolRevisionsToKeep('p', 2)).toThrow(/maximum 1/);
    expect(pool.revisionsToKeep).toBe(1);
    reg.setPoolRevisionsToKeep('p', 0);
    expect(pool.config()['revisions_to_keep']).toBe('0');
    await expect(
      reg.addPool('file', 'q', { dir_path: '/tmp/x', revisions_to_keep: '5' }),
    ).rejects.toBeInstanceOf(StoragePoolException);
    const v = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    expect(() => v.setRevisionsToKeep(2)).toThrow(StoragePoolException);
    expect(() => v.setRevisionsToKeep(-2)).toThrow(QubesValueError);
  });

  it('verify reports missing images', async () => {
    const { tplRoot, appRoot } = await templateAndApp();
    await expect(tplRoot.verify()).rejects.toThrow(/Missing image file/);
    await expect(appRoot.verify()).rejects.toThrow(/Missing image file/);
    await tplRoot.create();
    await tplRoot.verify();
    await appRoot.verify();
    await expect(appRoot.start()).resolves.toBeUndefined();
    await appRoot.stop();
  });

  it('ephemeral follows the pool default for volatile volumes and is validated', async () => {
    await reg.createPool('file', 'p', { dir_path: dir, ephemeral_volatile: 'True' });
    const vol = reg.initVolume(owner('vm1'), {
      name: 'volatile',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: false,
      snapOnStart: false,
    });
    const priv = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    expect(vol.ephemeral).toBe(true);
    expect(vol.config().ephemeral).toBeUndefined();
    vol.setEphemeral(false);
    expect(vol.config().ephemeral).toBe(false);
    expect(priv.ephemeral).toBe(false);
    expect(() => priv.setEphemeral(true)).toThrow(QubesValueError);
  });

  it('clones (CloneFrom/CloneTo) with a sparse copy, across pools too', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    await reg.createPool('file', 'q', { dir_path: path.join(dir, 'other') });
    const src = reg.initVolume(owner('a'), {
      name: 'private',
      pool: 'p',
      size: 64 * MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    const dst = reg.initVolume(owner('b'), {
      name: 'private',
      pool: 'q',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await src.create();
    await dst.create();
    const srcImg = path.join(dir, 'appvms/a/private.img');
    await writeAt(srcImg, 32 * MiB, Buffer.from('payload'));
    const token = reg.cloneFrom(src);
    await reg.cloneTo(dst, token);
    const dstImg = path.join(dir, 'other/appvms/b/private.img');
    expect(await sha256File(dstImg)).toBe(await sha256File(srcImg));
    expect(await dst.size()).toBe(64 * MiB);
    expect(dst.config().size).toBe(64 * MiB);
    expect(await allocated(dstImg)).toBeLessThan(4 * MiB);
    // The token is spent.
    await expect(reg.cloneTo(dst, token)).rejects.toThrow(/Token to clone volume/);
  });

  it('a failed start undoes the volumes already started', async () => {
    const { tplRoot, appRoot } = await templateAndApp();
    await reg.createPool('file', 'q', { dir_path: path.join(dir, 'q') });
    const vol = reg.initVolume(owner('app'), {
      name: 'volatile',
      pool: 'q',
      size: MiB,
      rw: true,
      saveOnStop: false,
      snapOnStart: false,
    });
    const vols: Volume[] = [vol, appRoot];
    // The template image does not exist yet, so appRoot cannot start.
    await expect(reg.startVolumes(vols)).rejects.toThrow(/Missing image file/);
    expect(vol.isRunning()).toBe(false);
    await expect(fs.stat(path.join(dir, 'q/appvms/app/volatile-dirty.img'))).rejects.toThrow();
    await tplRoot.create();
    await reg.startVolumes(vols);
    expect(vol.isRunning() && appRoot.isRunning()).toBe(true);
    await reg.stopVolumes(vols);
    await reg.removeVolumes([...vols, tplRoot]);
    expect(await fs.readdir(path.join(dir, 'appvms'))).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'vm-templates'))).toEqual([]);
    expect(await reg.poolVolumeIds('p')).toEqual([]);
  });
});
