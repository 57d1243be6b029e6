import * as fs from 'node:fs/promises';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { poolInfoBody } from '../../src/api/methods/storage-wire.js';
import { StoragePoolException } from '../../src/model/errors.js';
import type { Volume } from '../../src/storage/driver.js';
import {
  CallbackPool,
  createCallbackDriver,
  pythonJsonDumps,
  shellQuote,
} from '../../src/storage/drivers/callback.js';
import { fileDriver } from '../../src/storage/drivers/file.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import { MiB, owner, tempDir } from './helpers.js';

let dir: string;
let log: string;
let configPath: string;
let poolDir: string;

/** A registry whose callback driver reads this test's config and wraps the file driver. */
function registry(): PoolRegistry {
  return new PoolRegistry({
    drivers: [fileDriver, createCallbackDriver({ configPath, backends: () => [fileDriver] })],
  });
}

async function logLines(): Promise<string[]> {
  try {
    return (await fs.readFile(log, 'utf8')).split('\n').filter((l) => l !== '');
  } catch {
    return [];
  }
}

/** Every named event writes its name to the log; a hook's own command gets no arguments. */
function eachEvent(events: readonly string[]): Record<string, string> {
  return Object.fromEntries(events.map((e) => [e, `echo ${e} "$#" >> ${shellQuote(log)}`]));
}

const VOLUME_EVENTS = [
  'pre_volume_create',
  'post_volume_create',
  'post_volume_remove',
  'pre_volume_resize',
  'pre_volume_start',
  'post_volume_start',
  'post_volume_stop',
  'pre_volume_import',
  'post_volume_import',
  'pre_volume_import_data',
  'post_volume_import_data_end',
  'pre_volume_export',
];

beforeEach(async () => {
  dir = await tempDir('odyssey-callback-');
  log = path.join(dir, 'hooks.log');
  configPath = path.join(dir, 'qubes_callback.json');
  poolDir = path.join(dir, 'pool');
  // The generic command logs one line per argument, like upstream's testCbLogArgs.
  const logArgs = path.join(dir, 'log-args');
  await fs.writeFile(
    logArgs,
    `#!/bin/bash\nfor a in "$@"; do printf '%s\\n' "$a" >> ${shellQuote(log)}; done\n`,
    {
      mode: 0o755,
    },
  );
  const config = {
    each: {
      bdriver: 'file',
      bdriver_args: { dir_path: poolDir, revisions_to_keep: 1 },
      ...eachEvent(['pre_sinit', 'pre_setup', 'post_destroy', ...VOLUME_EVENTS]),
    },
    generic: { bdriver: 'file', bdriver_args: { dir_path: poolDir }, cmd: logArgs, description: 'dé' },
    failing: {
      bdriver: 'file',
      bdriver_args: { dir_path: poolDir },
      pre_volume_create: 'echo no space >&2; exit 3',
      pre_volume_start: '-',
      cmd: 'exit 1',
    },
    signal: {
      bdriver: 'file',
      bdriver_args: { dir_path: poolDir },
      signal_back: true,
      post_volume_stop: `rmdir ${shellQuote(path.join(poolDir, 'vm-templates'))} && echo SIGNAL_setup`,
    },
    'no-driver': { description: 'nothing to wrap' },
    'bad-driver': { bdriver: 'zfs' },
  };
  await fs.writeFile(configPath, JSON.stringify(config));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function privateVolume(reg: PoolRegistry, pool: string, vm = 'vm1'): Volume {
  return reg.initVolume(owner(vm), {
    name: 'private',
    pool,
    size: 4 * MiB,
    rw: true,
    saveOnStop: true,
    snapOnStart: false,
    revisionsToKeep: 1,
  });
}

describe('callback pool driver', () => {
  it('runs each event hook around the wrapped file pool, pre_sinit once per daemon start', async () => {
    const reg = registry();
    await reg.addPool('callback', 'cb', { conf_id: 'each' });
    // Setup is the storage's initialisation: no pre_sinit before it.
    expect(await logLines()).toEqual(['pre_setup 0']);
    expect(reg.poolXml('cb')).toEqual({ name: 'cb', driver: 'callback', conf_id: 'each' });
    expect(poolInfoBody(await reg.poolInfo('cb'))).toMatch(
      /^conf_id=each\ndriver=callback\nname=cb\nsize=\d+\nusage=\d+\n$/,
    );
    await expect(fs.stat(path.join(poolDir, 'appvms'))).resolves.toBeDefined();

    const vol = privateVolume(reg, 'cb');
    expect(vol.pool.name).toBe('cb');
    await reg.createVolumes([vol]);
    const clean = path.join(poolDir, 'appvms/vm1/private.img');
    expect((await fs.stat(clean)).size).toBe(4 * MiB);
    await vol.start();
    const dev = await vol.blockDevice();
    expect(dev?.path).toBe(path.join(poolDir, 'appvms/vm1/private-dirty.img'));
    await fs.writeFile(dev?.path as string, 'changed', { flag: 'r+' });
    await vol.stop();
    expect(await vol.revisions()).toHaveLength(1);
    await reg.resize(vol, 8 * MiB);
    expect((await fs.stat(clean)).size).toBe(8 * MiB);
    await reg.clear(vol);
    expect(await logLines()).toEqual([
      'pre_setup 0',
      'pre_volume_create 0',
      'post_volume_create 0',
      'pre_volume_start 0',
      'post_volume_start 0',
      'post_volume_stop 0',
      'pre_volume_resize 0',
      'pre_volume_import_data 0',
      'post_volume_import_data_end 0',
    ]);

    // A daemon restart loads the pool from qubes.xml: the first use runs pre_sinit, once,
    // even when two operations come together.
    await fs.rm(log);
    const reg2 = registry();
    reg2.loadPool({ name: 'cb', driver: 'callback', conf_id: 'each' });
    expect(poolInfoBody(await reg2.poolInfo('cb'))).toBe('conf_id=each\ndriver=callback\nname=cb\n');
    const again = privateVolume(reg2, 'cb');
    const other = privateVolume(reg2, 'cb', 'vm2');
    await Promise.all([again.start(), reg2.createVolumes([other])]);
    const first = await logLines();
    expect(first[0]).toBe('pre_sinit 0');
    expect(first.slice(1).sort()).toEqual([
      'post_volume_create 0',
      'post_volume_start 0',
      'pre_volume_create 0',
      'pre_volume_start 0',
    ]);
    await other.start();
    expect((await logLines()).filter((l) => l === 'pre_sinit 0')).toHaveLength(1);
    await reg2.stopVolumes([again, other]);
    await reg2.removeVolumes([again, other]);
    await expect(fs.stat(clean)).rejects.toThrow();
    await reg2.removePool('cb');
    expect((await logLines()).slice(-3)).toEqual([
      'post_volume_remove 0',
      'post_volume_remove 0',
      'post_destroy 0',
    ]);
  });

  it('gives the generic cmd upstream argument list: pool, bdriver, event, conf_id, config, volume args', async () => {
    const reg = registry();
    await reg.addPool('callback', 'gen', { conf_id: 'generic' });
    const vol = privateVolume(reg, 'gen');
    await fs.rm(log);
    await reg.createVolumes([vol]);
    const conf = pythonJsonDumps({
      bdriver: 'file',
      bdriver_args: { dir_path: poolDir },
      cmd: path.join(dir, 'log-args'),
      description: 'dé',
    });
    expect(conf).toContain('"description": "d\\u00e9"');
    const args = (event: string): string[] => [
      'gen',
      'file',
      event,
      'generic',
      ...conf.split('\n'),
      'private',
      'appvms/vm1/private',
      'None',
    ];
    expect(await logLines()).toEqual([...args('pre_volume_create'), ...args('post_volume_create')]);
  });

  it('a failing hook stops the operation with its exit status; "-" skips an event', async () => {
    const reg = registry();
    // pre_setup is not configured, so the generic `exit 1` runs and refuses the pool.
    await expect(reg.addPool('callback', 'f', { conf_id: 'failing' })).rejects.toThrow(
      /returned non-zero exit status 1/,
    );
    expect(reg.poolNames()).toEqual([]);
    const pool = reg.loadPool({ name: 'f', driver: 'callback', conf_id: 'failing' }) as CallbackPool;
    // Its generic cmd stands for pre_sinit, so the first use runs it, and it fails.
    const vol = privateVolume(reg, 'f');
    await expect(vol.create()).rejects.toThrow(StoragePoolException);
    expect(pool.uninitialized).toBe(true);
  });

  it('signal_back: a hook printing SIGNAL_setup sets the wrapped pool up again', async () => {
    const reg = registry();
    await reg.addPool('callback', 's', { conf_id: 'signal' });
    const vol = privateVolume(reg, 's');
    await reg.createVolumes([vol]);
    await vol.start();
    await vol.stop();
    // The hook removed the directory; the file pool's setup made it again.
    await expect(fs.stat(path.join(poolDir, 'vm-templates'))).resolves.toBeDefined();
  });

  it('refuses a conf_id that is missing, has no bdriver or names an unknown driver', async () => {
    const reg = registry();
    await expect(reg.addPool('callback', 'x', { conf_id: 'absent' })).rejects.toThrow(
      `The specified conf_id absent could not be found inside ${configPath}.`,
    );
    await expect(reg.addPool('callback', 'x', { conf_id: 'no-driver' })).rejects.toThrow(
      `Missing bdriver for the conf_id no-driver inside ${configPath}.`,
    );
    await expect(reg.addPool('callback', 'x', { conf_id: 'bad-driver' })).rejects.toThrow(
      'The driver zfs was not found on your system.',
    );
    await expect(reg.addPool('callback', 'x', {})).rejects.toThrow(
      'missing required driver options: conf_id',
    );
  });
});
