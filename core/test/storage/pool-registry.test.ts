import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  PermissionDenied,
  QubesPoolInUseError,
  QubesValueError,
  StoragePoolException,
} from '../../src/model/errors.js';
import type { PoolDriver } from '../../src/storage/driver.js';
import { fileDriver } from '../../src/storage/drivers/file.js';
import { KernelVolume } from '../../src/storage/drivers/kernel.js';
import { lvmThinDriver } from '../../src/storage/drivers/lvm-thin.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { GiB, MiB, owner, tempDir } from './helpers.js';

let dir: string;
let reg: PoolRegistry;

beforeEach(async () => {
  dir = await tempDir();
  reg = new PoolRegistry();
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('PoolRegistry', () => {
  it('lists drivers with upstream parameter order', () => {
    expect(reg.driverList().map((d) => [d.name, ...d.params.map((p) => p.name)])).toEqual([
      ['file', 'revisions_to_keep', 'dir_path', 'ephemeral_volatile'],
      ['file-reflink', 'revisions_to_keep', 'dir_path', 'setup_check', 'ephemeral_volatile'],
      ['linux-kernel', 'dir_path'],
      ['lvm_thin', 'revisions_to_keep', 'volume_group', 'thin_pool', 'ephemeral_volatile'],
      ['callback', 'conf_id'],
    ]);
  });

  it('creates the default pools on first init (file on a non-reflink fs)', async () => {
    await reg.initDefaultPools(dir);
    expect(reg.poolNames()).toEqual(['varlibqubes', 'linux-kernel']);
    expect(reg.poolXml('varlibqubes')).toEqual({
      name: 'varlibqubes',
      dir_path: dir,
      driver: 'file',
      revisions_to_keep: '1',
      ephemeral_volatile: 'False',
    });
    expect(reg.poolXml('linux-kernel')).toEqual({
      name: 'linux-kernel',
      dir_path: path.join(dir, 'vm-kernels'),
      driver: 'linux-kernel',
    });
    expect((await fs.readdir(dir)).sort()).toEqual(['appvms', 'vm-templates']);
  });

  it('reports pool Info: config, size, usage, included_in', async () => {
    await reg.initDefaultPools(dir);
    const info = await reg.poolInfo('varlibqubes');
    const st = await fs.statfs(dir);
    expect(info).toEqual({
      config: {
        dir_path: dir,
        driver: 'file',
        ephemeral_volatile: 'False',
        name: 'varlibqubes',
        revisions_to_keep: '1',
      },
      size: st.bsize * st.blocks,
      usage: expect.any(Number) as number,
    });
    expect(await reg.poolInfo('linux-kernel')).toEqual({
      config: { dir_path: `${dir}/vm-kernels`, driver: 'linux-kernel', name: 'linux-kernel' },
      includedIn: 'varlibqubes',
    });
    expect(Object.keys(await reg.usageDetails('varlibqubes'))).toEqual(['data_size', 'data_usage']);
    expect(await reg.usageDetails('linux-kernel')).toEqual({});
  });

  it('adds pools, checking required parameters and name clashes', async () => {
    await reg.addPool('file', 'newpool', { dir_path: `${dir}/newpool` });
    expect(reg.poolNames()).toEqual(['newpool']);
    expect(await fs.readdir(path.join(dir, 'newpool'))).toEqual(['appvms', 'vm-templates']);
    await expect(reg.addPool('file', 'x', {})).rejects.toThrow(/^missing required driver options: dir_path$/);
    await expect(reg.addPool('file', 'newpool', { dir_path: `${dir}/other` })).rejects.toThrow(
      QubesPoolInUseError,
    );
    expect(reg.poolNames()).toEqual(['newpool']);
  });

  it('runs the permission hook after validation and before the name clash check', async () => {
    await reg.addPool('file', 'a', { dir_path: `${dir}/a` });
    const seen: string[] = [];
    await expect(
      reg.addPool('file', 'a', { dir_path: `${dir}/b` }, (name) => {
        seen.push(name);
      }),
    ).rejects.toBeInstanceOf(QubesPoolInUseError);
    expect(seen).toEqual(['a']);
    await expect(
      reg.addPool('file', 'c', { dir_path: `${dir}/c` }, () => {
        throw new PermissionDenied('');
      }),
    ).rejects.toBeInstanceOf(PermissionDenied);
    expect(reg.hasPool('c')).toBe(false);
  });

  it('refuses to remove pools in use', async () => {
    await reg.initDefaultPools(dir);
    await reg.addPool('file', 'extra', { dir_path: `${dir}/extra` });
    const v = reg.initVolume(owner('vm1'), {
      name: 'private',
      pool: 'extra',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await expect(reg.removePool('extra')).rejects.toThrow(/Storage pool is in use: 'extra'/);
    await expect(reg.removePool('varlibqubes', { default_pool: 'varlibqubes' })).rejects.toThrow(
      'Storage pool is in use: set as default_pool',
    );
    await expect(
      reg.removePool('linux-kernel', { default_pool: 'varlibqubes', default_pool_kernel: 'linux-kernel' }),
    ).rejects.toThrow(/set as default_pool_kernel/);
    await reg.removeVolumes([v]);
    await reg.removePool('extra');
    expect(reg.poolNames()).toEqual(['varlibqubes', 'linux-kernel']);
    expect(() => reg.getPool('extra')).toThrow(/Unknown storage pool extra/);
  });

  it('file and lvm_thin pools check revisions_to_keep and ephemeral_volatile with one rule', () => {
    // Constructing an lvm_thin pool runs no lvm command, so this needs no device-mapper.
    const pools: { driver: PoolDriver; own: Record<string, string> }[] = [
      { driver: fileDriver, own: { dir_path: dir } },
      { driver: lvmThinDriver, own: { volume_group: 'vg', thin_pool: 'pool' } },
    ];
    for (const { driver, own } of pools) {
      const bad = (params: Record<string, string>) => () => driver.create('p', { ...own, ...params });
      expect(bad({ revisions_to_keep: '-2' })).toThrow(new QubesValueError("Value can't be lower than -1"));
      expect(bad({ revisions_to_keep: '1.5' })).toThrow(
        new QubesValueError("Invalid value for revisions_to_keep: '1.5'"),
      );
      expect(bad({ ephemeral_volatile: 'maybe' })).toThrow(
        new QubesValueError("Invalid literal for boolean property: 'maybe'"),
      );
      const pool = driver.create('p', { ...own, revisions_to_keep: '-1', ephemeral_volatile: 'yes' });
      expect([pool.revisionsToKeep, pool.ephemeralVolatile]).toEqual([-1, true]);
      expect(() => pool.setRevisionsToKeep(-3)).toThrow(new QubesValueError("Value can't be lower than -1"));
      expect(pool.revisionsToKeep).toBe(-1);
    }
    expect(() => fileDriver.create('p', {})).toThrow(new StoragePoolException('file pool requires dir_path'));
    expect(() => lvmThinDriver.create('p', { volume_group: 'vg' })).toThrow(
      new StoragePoolException('lvm_thin pool requires thin_pool'),
    );
  });

  it('sets pool revisions_to_keep and ephemeral_volatile', async () => {
    await reg.createPool('file-reflink', 'r', { dir_path: dir, setup_check: 'False' });
    reg.setPoolRevisionsToKeep('r', 5);
    reg.setPoolEphemeralVolatile('r', true);
    expect(reg.poolXml('r')).toMatchObject({ revisions_to_keep: '5', ephemeral_volatile: 'True' });
    const restored = new PoolRegistry();
    restored.loadPool(reg.poolXml('r'));
    expect(restored.poolXml('r')).toEqual(reg.poolXml('r'));
  });

  it('lists pool volumes in creation order', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    for (const name of ['root', 'private', 'volatile']) {
      reg.initVolume(owner('debian-12', 'vm-templates'), {
        name,
        pool: 'p',
        size: GiB,
        rw: true,
        saveOnStop: name !== 'volatile',
        snapOnStart: false,
      });
    }
    expect(await reg.poolVolumeIds('p')).toEqual([
      'vm-templates/debian-12/root',
      'vm-templates/debian-12/private',
      'vm-templates/debian-12/volatile',
    ]);
  });

  it('kernel volumes: Info like Appendix A, vid follows the VM kernel, missing vmlinuz fails start', async () => {
    await reg.initDefaultPools(dir);
    const kdir = path.join(dir, 'vm-kernels/6.6.1');
    await fs.mkdir(kdir, { recursive: true });
    let kernel: string | undefined = '6.6.1';
    const k = reg.initVolume(
      { name: 'newvm', dirPrefix: 'appvms', kernel: () => kernel },
      {
        name: 'kernel',
        pool: 'linux-kernel',
        vid: '6.6.1',
        rw: false,
        saveOnStop: false,
        snapOnStart: false,
      },
    );
    expect(await reg.volumeInfo(k)).toEqual({
      pool: 'linux-kernel',
      vid: '6.6.1',
      size: 0,
      usage: 0,
      rw: false,
      source: undefined,
      path: `${kdir}/modules.img`,
      saveOnStop: false,
      snapOnStart: false,
      revisionsToKeep: 0,
      ephemeral: false,
      isOutdated: false,
    });
    await expect(reg.startVolumes([k])).rejects.toThrow(`Missing file: ${kdir}/vmlinuz`);
    await fs.writeFile(path.join(kdir, 'vmlinuz'), 'k');
    await fs.writeFile(path.join(kdir, 'initramfs'), 'i');
    await reg.startVolumes([k]);
    expect(await k.blockDevice()).toBeUndefined();
    expect(await (k as KernelVolume).kernelFiles()).toEqual({
      vmlinuz: `${kdir}/vmlinuz`,
      initramfs: `${kdir}/initramfs`,
    });
    await fs.writeFile(path.join(kdir, 'modules.img'), 'm');
    expect(await k.blockDevice()).toEqual({ path: `${kdir}/modules.img`, format: 'raw', readOnly: true });
    expect(await reg.poolVolumeIds('linux-kernel')).toEqual(['6.6.1']);
    expect(() => k.setRw(true)).toThrow(/read-only/);
    await expect(k.resize(1)).rejects.toBeInstanceOf(StoragePoolException);
    kernel = undefined;
    expect(k.vid).toBe('');
    expect(k.path).toBeUndefined();
    expect(() => reg.setPoolRevisionsToKeep('linux-kernel', 1)).toThrow(/revisions_to_keep=0/);
  });

  it('CloneTo checks that the source still exists, and the token is spent anyway', async () => {
    await reg.createPool('file', 'p', { dir_path: dir });
    const src = reg.initVolume(owner('a'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    const dst = reg.initVolume(owner('b'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await src.create();
    await dst.create();
    const token = reg.cloneFrom(src);
    await reg.removeVolumes([src]);
    // Removing the source revoked its tokens.
    await expect(reg.cloneTo(dst, token)).rejects.toThrow(/Token to clone volume/);

    const src2 = reg.initVolume(owner('c'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    const t2 = reg.cloneFrom(src2);
    // Source image never created: the copy fails, and the token is gone.
    await expect(reg.cloneTo(dst, t2)).rejects.toThrow(/Missing image file/);
    await expect(reg.cloneTo(dst, t2)).rejects.toThrow(/Token to clone volume/);
  });

  it('refuses to copy from a running volume with snapshots disabled', async () => {
    await reg.createPool('file-reflink', 'p', { dir_path: dir, setup_check: 'False' });
    const src = reg.initVolume(owner('a'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
      revisionsToKeep: -1,
    });
    const dst = reg.initVolume(owner('b'), {
      name: 'private',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: true,
      snapOnStart: false,
    });
    await src.create();
    await dst.create();
    await src.start();
    await expect(reg.cloneTo(dst, reg.cloneFrom(src))).rejects.toThrow(/must be stopped/);
    await src.stop();
    await reg.cloneTo(dst, reg.cloneFrom(src));
  });
});
