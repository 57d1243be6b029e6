import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { exc, rawCall, request } from '../support/harness.js';
import type { SpawnedDaemon } from '../support/spawn.js';
import { cleanUp, spawnDaemon } from '../support/spawn.js';

const started: SpawnedDaemon[] = [];
afterEach(() => cleanUp(started.splice(0)));

/** A refused connection (daemon already gone) counts as an empty reply. */
const call = (d: SpawnedDaemon, method: string, dest: string, arg = '', payload = '') =>
  rawCall(d.socket, request(method, dest, arg, payload)).then(
    (b) => b.toString('latin1'),
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') return '';
      throw e;
    },
  );

describe('odysseyd', () => {
  it('serves configuration with the hypervisor unreachable and names the cause on lifecycle calls', async () => {
    // The KVM backend aimed at a libvirt socket nobody listens on: the hypervisor is unreachable.
    const d = await spawnDaemon(['--backend', 'kvm', '--log-level', 'debug'], undefined, {
      ...process.env,
      ODYSSEY_LIBVIRT_SOCKET: '/nonexistent/libvirt-sock',
    });
    started.push(d);
    expect(await call(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=red')).toBe('0\0');
    expect(await call(d, 'admin.vm.property.Get', 'sa', 'label')).toBe('0\0default=False type=label red');
    await d.logged('backend kvm unavailable');
    const r = await call(d, 'admin.vm.Start', 'sa');
    expect(r.startsWith('2\0QubesVMError\0\0Cannot start sa: backend kvm is unavailable: ')).toBe(true);
  });

  it('drains and saves on SIGTERM: every acknowledged write is on disk, then the state dir is free', async () => {
    const d = await spawnDaemon();
    started.push(d);
    await call(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=red');
    const calls = Array.from({ length: 60 }, (_, i) =>
      call(d, 'admin.vm.feature.Set', 'sa', `f${i}`, `v${i}`),
    );
    await Promise.race(calls);
    d.proc.kill('SIGTERM');
    const replies = await Promise.all(calls);
    expect(await d.exited).toBe(0);
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    const acked = replies.map((r, i) => [r, i] as const).filter(([r]) => r === '0\0');
    expect(acked.length).toBeGreaterThan(0);
    for (const [, i] of acked) expect(xml).toContain(`<feature name="f${i}">v${i}</feature>`);
    for (const r of replies) expect(['0\0', '']).toContain(r);
    const again = await spawnDaemon([], d.stateDir);
    started.push(again);
    expect(await call(again, 'admin.vm.feature.List', 'sa')).toMatch(/^0\0f/);
  });

  it('refuses a second daemon on the same state dir', async () => {
    const d = await spawnDaemon();
    started.push(d);
    await expect(spawnDaemon(['--socket', join(d.stateDir, 'b.sock')], d.stateDir)).rejects.toThrow(
      `state dir ${d.stateDir} is in use by another odysseyd`,
    );
    expect(await call(d, 'admin.vm.List', 'dom0')).toMatch(/^0\0dom0 class=AdminVM/);
  });

  it('reports unknown destinations as upstream does', async () => {
    const d = await spawnDaemon();
    started.push(d);
    expect(await call(d, 'admin.vm.List', 'nosuch')).toBe(
      exc('QubesVMNotFoundError', "No such domain: 'nosuch'"),
    );
  });
});
