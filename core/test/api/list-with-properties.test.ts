import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc } from '../support/harness.js';
import { appendixA } from './fixture.js';

const BULK = 'admin.odyssey.vm.ListWithProperties';

let d: TestDaemon;
beforeAll(async () => {
  d = await appendixA();
  // A value GetAll escapes (backslash, newline) must stay escaped inside the bulk reply too.
  await d.ok('admin.vm.property.Set', 'work', 'kernelopts', 'a\\b');
});
afterAll(() => d.stop());

describe(BULK, () => {
  it('is admin.vm.List with each qube followed by its admin.vm.property.GetAll body and an empty line', async () => {
    const listed = (await d.ok('admin.vm.List', 'dom0')).split('\n').filter(Boolean);
    let expected = '';
    for (const line of listed) {
      const name = line.slice(0, line.indexOf(' '));
      expected += `${line}\n${await d.ok('admin.vm.property.GetAll', name)}\n`;
    }
    const reply = await d.call(BULK, 'dom0');
    expect(reply.subarray(0, 2).toString('latin1')).toBe('0\0');
    expect(reply.subarray(2).toString('utf8')).toBe(expected);
    expect(listed.map((l) => l.split(' ')[0])).toEqual([
      'dom0',
      'debian-12',
      'dvm1',
      'newvm',
      'sys-net',
      'work',
    ]);
    const body = reply.subarray(2).toString('utf8');
    expect(
      body.startsWith('dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n'),
    ).toBe(true);
    expect(body).toContain('\nkernelopts default=False type=str a\\\\b\n');
    expect(body.endsWith('\n\n')).toBe(true);
    expect(body.split('\n\n')).toHaveLength(listed.length + 1);
  });

  it("takes neither argument nor payload and serves dom0 only, with upstream's checks", async () => {
    expect((await d.call(BULK, 'dom0', 'x')).toString('latin1')).toBe(
      exc('ProtocolError', 'unexpected argument'),
    );
    expect((await d.call(BULK, 'dom0', '', 'x')).toString('latin1')).toBe(
      exc('ProtocolError', 'unexpected payload'),
    );
    expect((await d.call(BULK, 'work')).toString('latin1')).toBe(
      exc('ProtocolError', 'expected destination to be AdminVM'),
    );
  });
});
