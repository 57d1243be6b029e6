/**
 * The daemon's composition root takes what its container is given in place of what it would
 * make: the Vmm, the clock and the state dir (startDaemon registers them; here each is checked
 * to be the one in use).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.js';
import { FakeVmm } from '../support/fake-vmm.js';
import { startDaemon, type TestDaemon } from '../support/harness.js';

let d: TestDaemon | undefined;
afterEach(async () => d?.stop());

/** 2026-01-02T03:04:05.5Z, a time no machine's clock shows while the test runs. */
const PINNED: Clock = { now: () => Date.UTC(2026, 0, 2, 3, 4, 5, 500) };

describe('the daemon container', () => {
  it('starts domains on the Vmm, at the time of the clock, in the state dir it was given', async () => {
    const vmm = new FakeVmm();
    d = await startDaemon({ vmm, clock: PINNED });
    await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
    await d.ok('admin.vm.Start', 'work');

    expect(vmm.calls).toContain('start work');
    expect(vmm.domains.get('work')?.state).toBe('Running');
    const startTime = await d.ok('admin.vm.property.Get', 'work', 'start_time');
    expect(startTime.split(' ').at(-1)).toBe('1767323045.5');
    await d.daemon.store.flush();
    expect(await readFile(join(d.stateDir, 'qubes.xml'), 'utf8')).toContain(
      '<property name="name">work</property>',
    );
  });
});
