import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { App } from '../../src/model/app.js';
import { replayJournal } from '../../src/persist/journal.js';
import { StateStore } from '../../src/persist/state-store.js';
import { occupyThreadPool } from '../../../vchan/test/thread-pool.js';
import { noPools } from '../support/pools.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** File operations started through fs/promises and not finished (the journal's writes). */
const pendingFsPromises = (): number =>
  process.getActiveResourcesInfo().filter((r) => r === 'FSReqPromise').length;

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function store(): Promise<{ dir: string; app: App; store: StateStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-store-'));
  dirs.push(dir);
  const app = new App(dir, { memoryMiB: 4096, cpus: 2 }, noPools);
  app.createAdminVm(app.labels.get('black'));
  app.addVm('StandaloneVM', { name: 'one', label: app.labels.get('red') });
  const s = new StateStore(join(dir, 'qubes.xml'), app, { pools: () => [], volumes: () => undefined });
  await s.load(() => undefined);
  await s.flush();
  return { dir, app, store: s };
}

describe('StateStore', () => {
  it('folds the saves asked for while a record is being written into one next record, written after it', async () => {
    const { dir, app, store: s } = await store();
    const vm = app.domains.get('one');
    // Every pool thread waits in a read: a record's write stays pending until the release.
    const pool = occupyThreadPool(dir);
    const acked: string[] = [];
    const saves: Promise<unknown>[] = [];
    try {
      vm.features.set('first', '1');
      saves.push(s.save(vm).then(() => acked.push('first')));
      await tick();
      expect(pendingFsPromises()).toBe(1);
      for (const name of ['second', 'third']) {
        vm.features.set(name, name);
        saves.push(s.save(vm).then(() => acked.push(name)));
      }
      await tick();
      // Two records in flight at once measured slower than one (bench/README.md).
      expect(pendingFsPromises()).toBe(1);
    } finally {
      await pool.release();
    }
    await Promise.all(saves);
    expect(acked).toEqual(['first', 'second', 'third']);
    const replayed = replayJournal(await readFile(join(dir, 'qubes.xml.journal')));
    expect(replayed.records).toBe(2);
    expect(replayed.document).toContain('<feature name="third">third</feature>');
    await s.close();
  });
});
