import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc } from '../support/harness.js';
import { appendixA } from './fixture.js';

/**
 * Replies where scripts/upstream-differential.sh found us answering differently from
 * upstream's handler; each expectation is upstream's reply, byte for byte, unless the
 * README's table of deliberate deviations says otherwise.
 */
let d: TestDaemon;
afterEach(async () => d?.stop());

const text = async (method: string, dest: string, arg = '', payload: Buffer | string = '') =>
  (await d.call(method, dest, arg, payload)).toString('utf8');

describe('admin.vm.Create.*', () => {
  it('checks the template argument before the payload, which may be empty', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.TemplateVM', 'dom0', 'sys-net')).toBe(
      exc('ProtocolError', 'TemplateVM cannot be based on template'),
    );
    // Upstream fails to split the empty parameter (a ValueError, an empty reply); ours is typed.
    expect(await text('admin.vm.Create.AppVM', 'dom0', 'debian-12')).toBe(
      exc('ProtocolError', 'Invalid parameter: '),
    );
  });

  it('checks Create.AdminVM like any creation before refusing it', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.AdminVM', 'dom0', '', 'name=default label=red')).toBe(
      exc('QubesValueError', "VM name cannot be 'none' nor 'default'"),
    );
    expect(await text('admin.vm.CreateInPool.AdminVM', 'dom0', 'debian-12', 'name=x label=red')).toBe(
      exc('ProtocolError', 'AdminVM cannot be based on template'),
    );
    expect(await text('admin.vm.Create.AdminVM', 'dom0', '', 'name=x label=red')).toBe(
      exc('ProtocolError', 'AdminVM cannot be created'),
    );
  });

  it("names an unknown pool in upstream's words", async () => {
    d = await appendixA();
    expect(await text('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=x label=red pool=nopool')).toBe(
      exc('QubesException', 'Unknown storage pool nopool'),
    );
    expect(await text('admin.vm.List', 'dom0')).not.toContain('\nx class=');
  });
});
