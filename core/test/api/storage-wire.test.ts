import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  addPoolFromPayload,
  driversBody,
  linesBody,
  poolInfoBody,
  revisionName,
  usageDetailsBody,
  volumeInfoBody,
} from '../../src/api/methods/storage-wire.js';
import {
  PermissionDenied,
  ProtocolError,
  QubesException,
  QubesPoolInUseError,
} from '../../src/model/errors.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { tempDir } from '../storage/helpers.js';

let dir: string;
let reg: PoolRegistry;

beforeEach(async () => {
  dir = await tempDir();
  reg = new PoolRegistry();
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('storage bodies on the wire', () => {
  it('lists drivers with upstream parameter order', () => {
    expect(driversBody(reg.driverList())).toBe(
      'file revisions_to_keep dir_path ephemeral_volatile\n' +
        'file-reflink revisions_to_keep dir_path setup_check ephemeral_volatile\n' +
        'linux-kernel dir_path\n' +
        'lvm_thin revisions_to_keep volume_group thin_pool ephemeral_volatile\n' +
        'callback conf_id\n',
    );
  });

  it('prints pool Info like upstream: sorted config, size, usage, included_in', async () => {
    await reg.initDefaultPools(dir);
    const st = await fs.statfs(dir);
    expect(poolInfoBody(await reg.poolInfo('varlibqubes'))).toMatch(
      new RegExp(
        `^dir_path=${dir}\ndriver=file\nephemeral_volatile=False\nname=varlibqubes\nrevisions_to_keep=1\n` +
          `size=${st.bsize * st.blocks}\nusage=\\d+\n$`,
      ),
    );
    expect(poolInfoBody(await reg.poolInfo('linux-kernel'))).toBe(
      `dir_path=${dir}/vm-kernels\ndriver=linux-kernel\nname=linux-kernel\nincluded_in=varlibqubes\n`,
    );
    expect(usageDetailsBody(await reg.usageDetails('varlibqubes'))).toMatch(
      /^data_size=\d+\ndata_usage=\d+\n$/,
    );
    expect(usageDetailsBody(await reg.usageDetails('linux-kernel'))).toBe('');
    expect(linesBody(reg.poolNames())).toBe('varlibqubes\nlinux-kernel\n');
    expect(linesBody([])).toBe('');
  });

  it('prints volume Info in upstream field order with Python booleans', () => {
    expect(
      volumeInfoBody({
        pool: 'p',
        vid: 'appvms/vm1/private',
        size: 2147483648,
        usage: 0,
        rw: true,
        source: undefined,
        path: '/var/lib/qubes/appvms/vm1/private.img',
        saveOnStop: true,
        snapOnStart: false,
        revisionsToKeep: 1,
        ephemeral: false,
        isOutdated: true,
      }),
    ).toBe(
      'pool=p\nvid=appvms/vm1/private\nsize=2147483648\nusage=0\nrw=True\nsource=\n' +
        'path=/var/lib/qubes/appvms/vm1/private.img\nsave_on_stop=True\nsnap_on_start=False\n' +
        'revisions_to_keep=1\nephemeral=False\nis_outdated=True\n',
    );
  });

  it('accepts revision names from the safe set only', () => {
    expect(revisionName('1')).toBe('1');
    expect(revisionName('2024-01-01T00:00:00')).toBe('2024-01-01T00:00:00');
    expect(() => revisionName('a/b')).toThrow(ProtocolError);
    expect(() => revisionName('a/b')).toThrow(/safe set/);
  });
});

describe('admin.pool.Add payload', () => {
  it('adds pools from the payload and validates it like upstream, in upstream order', async () => {
    await addPoolFromPayload(reg, 'file', `name=newpool\ndir_path=${dir}/newpool\n`);
    expect(reg.poolNames()).toEqual(['newpool']);
    expect(await fs.readdir(path.join(dir, 'newpool'))).toEqual(['appvms', 'vm-templates']);

    const bad: [string, string, unknown, RegExp][] = [
      ['nope', 'name=x\n', PermissionDenied, /available drivers/],
      ['file', 'name=x\ndir_path=/tmp/é\n', ProtocolError, /non-ASCII/],
      ['file', 'name=x\ndir_path\n', ProtocolError, /equal sign/],
      ['file', 'name=x\nname=y\ndir_path=/a\n', ProtocolError, /unique/],
      ['file', 'dir_path=/a\n', ProtocolError, /must contain key: name/],
      ['file', 'name=a b\ndir_path=/a\n', ProtocolError, /safe set/],
      ['file', 'name=x\ndir_path=/a\nbogus=1\n', ProtocolError, /^Unexpected driver options found$/],
      ['file', 'name=x\n', QubesException, /^missing required driver options: dir_path$/],
      [
        'file',
        `name=newpool\ndir_path=${dir}/other\n`,
        QubesPoolInUseError,
        /Storage pool is in use: 'newpool'/,
      ],
    ];
    for (const [driver, payload, cls, msg] of bad) {
      const p = addPoolFromPayload(reg, driver, Buffer.from(payload, 'utf8'));
      await expect(p, payload).rejects.toBeInstanceOf(cls);
      await expect(addPoolFromPayload(reg, driver, Buffer.from(payload, 'utf8'))).rejects.toThrow(msg);
    }
    expect(reg.poolNames()).toEqual(['newpool']);
  });

  it('splits lines as Python does and keeps everything after the first equal sign', async () => {
    await addPoolFromPayload(reg, 'file', `name=a\r\ndir_path=${dir}/a=b\x1erevisions_to_keep=0`);
    expect(reg.poolXml('a')).toMatchObject({ dir_path: `${dir}/a=b`, revisions_to_keep: '0' });
  });
});
