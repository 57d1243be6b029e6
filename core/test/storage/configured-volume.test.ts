import * as fs from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { QubesValueError, StoragePoolException } from '../../src/model/errors.js';
import type { Pool, VolumeConfig } from '../../src/storage/driver.js';
import { ThinPool } from '../../src/storage/drivers/lvm-thin.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { volumeConfigToXml } from '../../src/storage/volume-config.js';
import { MiB, owner, tempDir } from './helpers.js';

/** Volume settings need no data: an LVM thin pool's volumes are built without LVM here. */
interface Driver {
  readonly name: string;
  pool(ephemeralVolatile: boolean): Promise<Pool>;
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

let pools = 0;
const drivers: Driver[] = [
  {
    name: 'file',
    async pool(ephemeralVolatile) {
      const reg = new PoolRegistry();
      const name = `p${pools++}`;
      await reg.createPool('file', name, {
        dir_path: `${dir}/${name}`,
        ephemeral_volatile: ephemeralVolatile ? 'True' : 'False',
      });
      return reg.getPool(name);
    },
  },
  {
    name: 'lvm_thin',
    async pool(ephemeralVolatile) {
      return new ThinPool(`p${pools++}`, {
        volume_group: 'qubes_dom0',
        thin_pool: 'vm-pool',
        ephemeral_volatile: ephemeralVolatile ? 'True' : 'False',
      });
    },
  },
];

const volatile = { name: 'volatile', size: MiB, rw: true, saveOnStop: false, snapOnStart: false };
const priv = { name: 'private', size: MiB, rw: true, saveOnStop: true, snapOnStart: false };

describe.each(drivers)('volume settings kept by the $name driver', (driver) => {
  it('writes back to qubes.xml exactly the settings it was built from, and the ones set since', async () => {
    const pool = await driver.pool(false);
    const config: VolumeConfig = { ...priv, pool: pool.name, vid: 'v-private', revisionsToKeep: 1 };
    const vol = pool.initVolume(owner('vm1'), config);
    expect(volumeConfigToXml(vol.config())).toEqual(volumeConfigToXml(config));
    vol.setRevisionsToKeep(-1);
    vol.setRw(false);
    expect(volumeConfigToXml(vol.config())).toEqual({
      ...volumeConfigToXml(config),
      revisions_to_keep: '-1',
      rw: 'False',
    });
  });

  it('follows the pool for ephemeral until set, and refuses it where upstream does', async () => {
    const pool = await driver.pool(true);
    const vol = pool.initVolume(owner('vm1'), { ...volatile, pool: pool.name });
    const kept = pool.initVolume(owner('vm1'), { ...priv, pool: pool.name });
    expect([vol.ephemeral, vol.config().ephemeral]).toEqual([true, undefined]);
    vol.setEphemeral(false);
    expect([vol.ephemeral, vol.config().ephemeral]).toEqual([false, false]);
    expect(kept.ephemeral).toBe(false);
    expect(() => kept.setEphemeral(true)).toThrow(QubesValueError);
    expect(kept.config().ephemeral).toBeUndefined();
  });

  it('refuses a revisions_to_keep upstream refuses, keeping the one it had', async () => {
    const pool = await driver.pool(false);
    const vol = pool.initVolume(owner('vm1'), { ...priv, pool: pool.name, revisionsToKeep: 1 });
    for (const bad of [-2, 1.5, Number.NaN])
      expect(() => vol.setRevisionsToKeep(bad)).toThrow(QubesValueError);
    if (driver.name === 'file') expect(() => vol.setRevisionsToKeep(2)).toThrow(StoragePoolException);
    expect(vol.revisionsToKeep).toBe(1);
  });

  it('refuses a snapshot without a source and a source without a snapshot', async () => {
    const pool = await driver.pool(false);
    const build = (c: Partial<VolumeConfig>) => () =>
      pool.initVolume(owner('vm1'), { ...volatile, pool: pool.name, ...c });
    expect(build({ snapOnStart: true })).toThrow(StoragePoolException);
    expect(build({ source: 'v-root' })).toThrow(StoragePoolException);
  });
});
