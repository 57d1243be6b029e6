import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { rawCall, request } from '../support/harness.js';
import type { SpawnedDaemon } from '../support/spawn.js';
import { cleanUp, spawnDaemon } from '../support/spawn.js';

const started: SpawnedDaemon[] = [];
afterEach(() => cleanUp(started.splice(0)));

/** The reply as text; a connection the killed daemon refused or reset is an empty reply. */
const call = (socket: string, method: string, dest: string, arg = '', payload = '') =>
  rawCall(socket, request(method, dest, arg, payload)).then(
    (b) => b.toString('latin1'),
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') return '';
      throw e;
    },
  );

describe('odysseyd killed with SIGKILL', () => {
  it('starts again at once on the same state dir, with every acknowledged write', async () => {
    const coldStart = performance.now();
    const d = await spawnDaemon();
    const coldMs = performance.now() - coldStart;
    started.push(d);
    expect(await call(d.socket, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=red')).toBe('0\0');

    // Writers stream feature.Set calls until the daemon dies under them; it is
    // killed once some writes were acknowledged, so others are in flight.
    const acked: number[] = [];
    let next = 0;
    let killed = false;
    const killAfter = 40;
    const writer = async () => {
      while (!killed || d.proc.exitCode === null) {
        const i = next++;
        const reply = await call(d.socket, 'admin.vm.feature.Set', 'sa', `f${i}`, `v${i}`);
        if (reply === '') return;
        expect(reply).toBe('0\0');
        acked.push(i);
        if (acked.length >= killAfter && !killed) {
          killed = true;
          d.proc.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, writer));
    await d.exited;
    const killedAt = performance.now();
    expect(d.proc.signalCode).toBe('SIGKILL');

    const again = await spawnDaemon([], d.stateDir);
    started.push(again);
    const listed = await call(again.socket, 'admin.vm.feature.List', 'sa');
    const servedMs = performance.now() - killedAt;
    console.log(
      `[crash-restart] ${acked.length} writes acknowledged of ${next} sent; ` +
        `serving again ${servedMs.toFixed(0)} ms after the SIGKILL (a first start took ${coldMs.toFixed(0)} ms)`,
    );
    expect(listed.startsWith('0\0')).toBe(true);
    const features = new Set(listed.slice(2).split('\n').filter(Boolean));
    for (const i of acked) expect(features.has(`f${i}`), `acknowledged f${i}`).toBe(true);
    for (const i of acked.slice(0, 5))
      expect(await call(again.socket, 'admin.vm.feature.Get', 'sa', `f${i}`)).toBe(`0\0v${i}`);
    expect(again.stderr()).not.toContain('in use by another odysseyd');
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    for (const i of acked) expect(xml).toContain(`<feature name="f${i}">v${i}</feature>`);
  }, 60_000);
});
