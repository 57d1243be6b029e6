import { connect } from 'node:net';
import type { Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { request } from '../support/harness.js';
import { appendixA } from './fixture.js';

/** Opens admin.Events and collects raw bytes until `until` returns true. */
function subscribe(
  socket: string,
  dest: string,
  src = 'dom0',
): { sock: Socket; data: () => string; wait: (n: string) => Promise<void> } {
  let buf = '';
  const waiters: [string, () => void][] = [];
  const sock = connect(socket);
  sock.on('connect', () => sock.end(request('admin.Events', dest, '', '', src)));
  sock.on('data', (c: Buffer) => {
    buf += c.toString('latin1');
    for (const [needle, resolve] of waiters) if (buf.includes(needle)) resolve();
  });
  return {
    sock,
    data: () => buf,
    wait: (needle) =>
      new Promise<void>((resolve) => {
        if (buf.includes(needle)) resolve();
        else waiters.push([needle, resolve]);
      }),
  };
}

const CAPTURED = [
  '1\0\0connection-established\0\0',
  '1\0work\0property-pre-set:memory\0name\0memory\0newvalue\x00600\0oldvalue\x00400\0\0',
  '1\0work\0property-set:memory\0name\0memory\0newvalue\x00600\0oldvalue\x00400\0\0',
  '1\0work\0property-pre-reset:memory\0name\0memory\0oldvalue\x00600\0\0',
  '1\0work\0property-pre-del:memory\0name\0memory\0oldvalue\x00600\0\0',
  '1\0work\0property-reset:memory\0name\0memory\0oldvalue\x00600\0\0',
  '1\0work\0property-del:memory\0name\0memory\0oldvalue\x00600\0\0',
  '1\0work\0domain-feature-pre-set:foo\0feature\0foo\0value\0bar\0\0',
  '1\0work\0domain-feature-set:foo\0feature\0foo\0value\0bar\0\0',
  '1\0work\0domain-feature-pre-delete:foo\0feature\0foo\0\0',
  '1\0work\0domain-feature-delete:foo\0feature\0foo\0\0',
  '1\0work\0domain-tag-add:tagx\0tag\0tagx\0\0',
  '1\0work\0domain-tag-delete:tagx\0tag\0tagx\0\0',
  '1\0\0domain-add\0vm\0ev1\0\0',
  '1\0ev1\0domain-tag-add:created-by-dom0\0tag\0created-by-dom0\0\0',
  '1\0ev1\0domain-create-on-disk\0\0',
  '1\0\0domain-pre-delete\0vm\0ev1\0\0',
  '1\0\0domain-delete\0vm\0ev1\0\0',
  '1\0work\0property-pre-set:label\0name\0label\0newvalue\0green\0oldvalue\0blue\0\0',
  '1\0work\0property-reset:icon\0name\0icon\0\0',
  '1\0work\0property-set:label\0name\0label\0newvalue\0green\0oldvalue\0blue\0\0',
];

let d: TestDaemon;
beforeAll(async () => {
  d = await appendixA();
});
afterAll(async () => d.stop());

async function scenario(): Promise<void> {
  await d.ok('admin.vm.property.Set', 'work', 'memory', '600');
  await d.ok('admin.vm.property.Reset', 'work', 'memory');
  await d.ok('admin.vm.feature.Set', 'work', 'foo', 'bar');
  await d.ok('admin.vm.feature.Remove', 'work', 'foo');
  await d.ok('admin.vm.tag.Set', 'work', 'tagx');
  await d.ok('admin.vm.tag.Remove', 'work', 'tagx');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=ev1 label=red');
  await d.ok('admin.vm.Remove', 'ev1');
  await d.ok('admin.vm.property.Set', 'work', 'label', 'green');
  await d.ok('admin.vm.property.Set', 'work', 'label', 'blue');
}

describe('admin.Events', () => {
  it('streams what upstream streams, in order, for dom0 and for one VM', async () => {
    const all = subscribe(d.socket, 'dom0');
    const one = subscribe(d.socket, 'work');
    await all.wait('connection-established');
    await one.wait('connection-established');
    await scenario();
    const last = CAPTURED.at(-1) as string;
    await all.wait(last);
    await one.wait(last);
    all.sock.destroy();
    one.sock.destroy();
    expect(JSON.stringify(all.data().slice(0, CAPTURED.join('').length))).toBe(
      JSON.stringify(CAPTURED.join('')),
    );
    const perVm = CAPTURED.filter((m) => m.startsWith('1\0work\0') || m.includes('connection-established'));
    expect(one.data().startsWith(perVm.join(''))).toBe(true);
  });

  it('keeps serving other clients while a stream is open and after it is dropped', async () => {
    const s = subscribe(d.socket, 'dom0');
    await s.wait('connection-established');
    expect(await d.ok('admin.vm.property.Get', 'work', 'name')).toBe('default=False type=str work');
    s.sock.destroy();
    await d.ok('admin.vm.property.Set', 'work', 'memory', '500');
    expect(await d.ok('admin.vm.property.Get', 'work', 'memory')).toBe('default=False type=int 500');
  });
});

describe('events of computed and inherited values', () => {
  it('fans global defaults out to the VMs that follow them and keeps guivm tags in step', async () => {
    const s = subscribe(d.socket, 'newvm');
    await s.wait('connection-established');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=gui2 label=red');
    await d.ok('admin.property.Set', 'dom0', 'default_guivm', 'gui2');
    await d.ok('admin.vm.property.Set', 'newvm', 'provides_network', 'True');
    await d.ok('admin.vm.property.Reset', 'newvm', 'provides_network');
    await s.wait('property-reset:gateway6');
    s.sock.destroy();
    // The tags follow inside the handling of property-set:guivm, so they are announced first.
    expect(s.data()).toContain(
      '1\x00newvm\x00domain-tag-delete:guivm-dom0\x00tag\x00guivm-dom0\x00\x00' +
        '1\x00newvm\x00domain-tag-add:guivm-gui2\x00tag\x00guivm-gui2\x00\x00' +
        '1\x00newvm\x00property-set:guivm\x00name\x00guivm\x00newvalue\x00gui2\x00oldvalue\x00dom0\x00\x00',
    );
    expect(s.data()).toContain('1\x00newvm\x00property-reset:gateway\x00name\x00gateway\x00\x00');
    expect(await d.ok('admin.vm.tag.List', 'newvm')).toContain('guivm-gui2\n');
    await d.ok('admin.property.Reset', 'dom0', 'default_guivm');
    expect(await d.ok('admin.vm.tag.List', 'newvm')).toContain('guivm-dom0\n');
  });
});
