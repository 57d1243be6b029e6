import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { linesBody, poolInfoBody, volumeInfoBody } from '../../src/api/methods/storage-wire.js';
import { StoragePoolException } from '../../src/model/errors.js';
import type { Volume, VolumeConfig } from '../../src/storage/driver.js';
import { lvmArgv, mapperPath, parseLvs } from '../../src/storage/drivers/lvm-commands.js';
import { currentVid, revisionsOf } from '../../src/storage/drivers/lvm-thin.js';
import { importStream } from '../../src/storage/importer.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { bytesOf, MiB, owner, sha256File, tempDir } from './helpers.js';
import { createThinPool, lvsOf, type ThinPoolFixture } from './lvm-helpers.js';

describe('lvm_thin naming and lvm command lines (no LVM needed)', () => {
  it('parses lvs JSON as upstream: sizes in bytes, usage from percentages', () => {
    const table = parseLvs(
      JSON.stringify({
        report: [
          {
            lv: [
              {
                vg_name: 'qubes_dom0',
                pool_lv: '',
                lv_name: 'vm-pool',
                lv_size: '1073741824B',
                data_percent: '12.50',
                lv_attr: 'twi-aotz--',
                origin: '',
                lv_metadata_size: '4194304B',
                metadata_percent: '1.00',
              },
              {
                vg_name: 'qubes_dom0',
                pool_lv: 'vm-pool',
                lv_name: 'vm-a-root-snap',
                lv_size: '2097152B',
                data_percent: '',
                lv_attr: 'Vwi-aotz--',
                origin: 'vm-t-root',
                lv_metadata_size: '',
                metadata_percent: '',
              },
              { vg_name: '', lv_name: 'orphan', lv_size: '1B' },
            ],
          },
        ],
      }),
    );
    expect([...table.keys()]).toEqual(['qubes_dom0/vm-pool', 'qubes_dom0/vm-a-root-snap']);
    expect(table.get('qubes_dom0/vm-pool')).toEqual({
      size: 1073741824,
      usage: 134217728,
      poolLv: '',
      attr: 'twi-aotz--',
      origin: '',
      metadataSize: 4194304,
      metadataUsage: 41943,
    });
    expect(table.get('qubes_dom0/vm-a-root-snap')?.origin).toBe('vm-t-root');
  });

  it('finds revisions by their -<epoch>-back names, the current LV, and the /dev/mapper path', () => {
    const info = {
      size: 1,
      usage: 0,
      poolLv: 'p',
      attr: 'V',
      origin: '',
      metadataSize: undefined,
      metadataUsage: undefined,
    };
    const table = new Map(
      [
        'vg/vm-a-private-1700000100-back',
        'vg/vm-a-private-1700000000-back',
        'vg/vm-a-private-x-1700000000-back',
      ].map((k) => [k, info] as const),
    );
    expect(revisionsOf('vg/vm-a-private', table)).toEqual([
      { id: '1700000000-back', timestamp: '2023-11-14T22:13:20' },
      { id: '1700000100-back', timestamp: '2023-11-14T22:15:00' },
    ]);
    expect(currentVid('vg/vm-a-private', table)).toBe('vg/vm-a-private-1700000100-back');
    expect(currentVid('vg/vm-b-private', table)).toBe('vg/vm-b-private');
    expect(mapperPath('qubes_dom0/vm-my-vm-root-snap')).toBe('/dev/mapper/qubes_dom0-vm--my--vm--root--snap');
  });

  it('builds upstream lvm command lines', () => {
    expect(lvmArgv({ op: 'create', pool: 'vg/tp', name: 'vm-a-private', size: 1024 })).toEqual([
      'lvcreate',
      '--thin',
      '--setactivationskip=n',
      '--activate=y',
      '--name=vm-a-private',
      '--virtualsize=1024B',
      '--',
      'vg/tp',
    ]);
    expect(lvmArgv({ op: 'clone', from: 'vg/vm-t-root', to: 'vg/vm-a-root-snap' })).toEqual([
      'lvcreate',
      '--setactivationskip=n',
      '--activate=y',
      '--snapshot',
      '--name=vm-a-root-snap',
      '--',
      'vg/vm-t-root',
    ]);
    expect(lvmArgv({ op: 'rename', from: 'vg/a', to: 'vg/b' })).toEqual(['lvrename', '--', 'vg/a', 'vg/b']);
    expect(lvmArgv({ op: 'resize', lv: 'vg/a', size: 2048 })).toEqual([
      'lvresize',
      '--size=2048B',
      '--',
      'vg/a',
    ]);
    expect(lvmArgv({ op: 'remove', lv: 'vg/a' })).toEqual(['lvremove', '--force', '--', 'vg/a']);
    expect(() => lvmArgv({ op: 'remove', lv: 'vg' })).toThrow(StoragePoolException);
  });
});

let fixture: ThinPoolFixture | undefined;
let skipReason = '';
let scratch: string;

beforeAll(async () => {
  const f = await createThinPool();
  if (typeof f === 'string') {
    skipReason = f;
    console.warn(`skipping lvm_thin pool tests: ${f}`);
  } else fixture = f;
  scratch = await tempDir('odyssey-lvm-scratch-');
}, 600_000);

afterAll(async () => {
  await fixture?.cleanup();
  await fs.rm(scratch, { recursive: true, force: true });
}, 600_000);

async function headHash(dev: string, bytes: number): Promise<string> {
  const fh = await fs.open(dev, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    await fh.read(buf, 0, bytes, 0);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    await fh.close();
  }
}

/** The block device of a started volume. */
async function devicePath(volume: Volume): Promise<string> {
  const dev = await volume.blockDevice();
  if (!dev) throw new Error(`${volume.vid} has no block device`);
  return dev.path;
}

async function writeAt(dev: string, data: Buffer, pos = 0): Promise<void> {
  const fh = await fs.open(dev, 'r+');
  try {
    await fh.write(data, 0, data.length, pos);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const SIZE = 16 * MiB;

function cfg(name: string, over: Partial<VolumeConfig>): VolumeConfig {
  return { name, pool: 'lvm', rw: true, saveOnStop: false, snapOnStart: false, size: SIZE, ...over };
}

describe('lvm_thin on a real thin pool (loop device)', { timeout: 1_200_000 }, () => {
  it('creates, snapshots, commits with revisions, reverts, imports, clones, resizes and removes', async (ctx) => {
    if (!fixture) return ctx.skip(skipReason);
    const { vg, thinPool } = fixture;
    const reg = new PoolRegistry();
    await expect(reg.addPool('lvm_thin', 'bad', { volume_group: vg, thin_pool: 'nope' })).rejects.toThrow(
      `Thin pool ${vg}/nope does not exist`,
    );
    await reg.addPool('lvm_thin', 'lvm', { volume_group: vg, thin_pool: thinPool, revisions_to_keep: '2' });
    expect(poolInfoBody(await reg.poolInfo('lvm'))).toMatch(
      new RegExp(
        `^driver=lvm_thin\nephemeral_volatile=False\nname=lvm\nrevisions_to_keep=2\nthin_pool=${thinPool}\n` +
          `volume_group=${vg}\nsize=${256 * MiB}\nusage=\\d+\n$`,
      ),
    );
    expect(Object.keys(await reg.getPool('lvm').usageDetails())).toEqual([
      'data_size',
      'data_usage',
      'metadata_size',
      'metadata_usage',
    ]);

    // A template's root, with data imported the way admin.vm.volume.Import brings it.
    const tplRoot = reg.initVolume(owner('tpl', 'vm-templates'), cfg('root', { saveOnStop: true }));
    expect(tplRoot.vid).toBe(`${vg}/vm-tpl-root`);
    await reg.createVolumes([tplRoot]);
    expect((await lvsOf(vg)).has('vm-tpl-root')).toBe(true);
    const image = Buffer.alloc(SIZE);
    randomBytes(MiB).copy(image, 3 * MiB);
    await importStream(tplRoot, bytesOf(image), SIZE);
    const tplHash = createHash('sha256').update(image).digest('hex');
    expect(await headHash(`/dev/${tplRoot.vid}`, SIZE)).toBe(tplHash);
    expect((await tplRoot.revisions()).map((r) => r.id)).toEqual([expect.stringMatching(/^\d+-back$/)]);
    expect(volumeInfoBody(await reg.volumeInfo(tplRoot))).toBe(
      `pool=lvm\nvid=${vg}/vm-tpl-root\nsize=${SIZE}\nusage=${await tplRoot.usage()}\nrw=True\nsource=\n` +
        `path=${mapperPath(tplRoot.vid)}\nsave_on_stop=True\nsnap_on_start=False\nrevisions_to_keep=2\n` +
        `ephemeral=False\nis_outdated=False\n`,
    );

    // An AppVM's root: a thin snapshot of the template's root while it runs, dropped at stop.
    const appRoot = reg.initVolume(owner('app'), cfg('root', { snapOnStart: true, source: tplRoot.vid }));
    const appPrivate = reg.initVolume(owner('app'), cfg('private', { saveOnStop: true }));
    const appVolatile = reg.initVolume(owner('app'), cfg('volatile', {}));
    const app: Volume[] = [appRoot, appPrivate, appVolatile];
    await reg.createVolumes(app);
    await reg.startVolumes(app);
    let lvs = await lvsOf(vg);
    expect(lvs.get('vm-app-root-snap')).toBe('vm-tpl-root');
    expect(lvs.get('vm-app-private-snap')).toBe('vm-app-private');
    expect(lvs.has('vm-app-volatile')).toBe(true);
    const rootDev = await appRoot.blockDevice();
    expect(rootDev).toEqual({ path: mapperPath(`${vg}/vm-app-root-snap`), format: 'raw', readOnly: false });
    expect(rootDev?.path).toContain('ody--');
    expect(await headHash(rootDev?.path as string, SIZE)).toBe(tplHash);
    expect(await appPrivate.isDirty()).toBe(true);
    expect(await appRoot.isOutdated()).toBe(false);

    // The template changes while the AppVM runs: the AppVM's snapshot is now outdated.
    await tplRoot.start();
    await writeAt(await devicePath(tplRoot), Buffer.from('template update'));
    await tplRoot.stop();
    expect(await appRoot.isOutdated()).toBe(true);
    expect(await tplRoot.revisions()).toHaveLength(2);

    // Each stop commits the private snapshot; revisions beyond revisions_to_keep=2 go.
    const privDev = await devicePath(appPrivate);
    expect(privDev).toBe(mapperPath(`${vg}/vm-app-private-snap`));
    await writeAt(privDev, Buffer.from('first'));
    await reg.stopVolumes(app);
    lvs = await lvsOf(vg);
    expect([...lvs.keys()].filter((n) => n.startsWith('vm-app-')).sort()).toEqual([
      'vm-app-private',
      expect.stringMatching(/^vm-app-private-\d+-back$/),
    ]);
    expect(await appPrivate.isDirty()).toBe(false);
    for (const word of ['second', 'third']) {
      await appPrivate.start();
      await writeAt(await devicePath(appPrivate), Buffer.from(word));
      await appPrivate.stop();
    }
    const revs = await appPrivate.revisions();
    expect(revs).toHaveLength(2);
    expect(linesBody(await reg.snapshotIds(appPrivate))).toBe(`${revs[0]?.id}\n${revs[1]?.id}\n`);
    const head = async (): Promise<string> => {
      const fh = await fs.open(`/dev/${appPrivate.vid}`, 'r');
      try {
        const b = Buffer.alloc(5);
        await fh.read(b, 0, 5, 0);
        return b.toString('latin1');
      } finally {
        await fh.close();
      }
    };
    expect(await head()).toBe('third');
    // The oldest kept revision is the data after the first stop.
    await reg.revert(appPrivate, revs[0]?.id as string);
    expect(await head()).toBe('first');
    expect(await appPrivate.revisions()).toHaveLength(2);

    // Resize while halted grows the committed LV.
    await reg.resize(appPrivate, SIZE + 8 * MiB);
    expect(await appPrivate.size()).toBe(SIZE + 8 * MiB);

    // Clone within the pool (a thin snapshot), out to a file pool and back in (a copy).
    const clone = reg.initVolume(owner('clone'), cfg('private', { saveOnStop: true }));
    await reg.createVolumes([clone]);
    await reg.importVolume(clone, appPrivate);
    expect(await headHash(`/dev/${clone.vid}`, SIZE + 8 * MiB)).toBe(
      await headHash(`/dev/${appPrivate.vid}`, SIZE + 8 * MiB),
    );
    await reg.addPool('file', 'files', { dir_path: path.join(scratch, 'files') });
    const fileVol = reg.initVolume(owner('clone'), {
      ...cfg('private', { saveOnStop: true }),
      pool: 'files',
    });
    await reg.createVolumes([fileVol]);
    await reg.importVolume(fileVol, tplRoot);
    const fileImg = await fileVol.exportPath();
    expect(await sha256File(fileImg)).toBe(await headHash(`/dev/${tplRoot.vid}`, SIZE));
    const back = reg.initVolume(owner('back'), cfg('root', { saveOnStop: true }));
    await reg.createVolumes([back]);
    await reg.importVolume(back, fileVol);
    expect(await headHash(`/dev/${back.vid}`, SIZE)).toBe(await sha256File(fileImg));

    expect((await reg.poolVolumeIds('lvm')).filter((l) => l.includes('vm-app-'))).toEqual([
      `${vg}/vm-app-private`,
    ]);

    // Removal takes the volume, its snapshot and every revision.
    await reg.removeVolumes([...app, clone, back, tplRoot]);
    await reg.removeVolumes([fileVol]);
    expect([...(await lvsOf(vg)).keys()]).toEqual([thinPool]);
  });
});
