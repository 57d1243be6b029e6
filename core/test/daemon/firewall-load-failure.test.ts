/**
 * A qube whose firewall.xml cannot be loaded: the daemon starts and serves everything else, and
 * that qube is never given open network. What reads its rules (Get, Reload, a start with a netvm,
 * a disposable of it) is refused with why, until Set replaces the file.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, startDaemon } from '../support/harness.js';

let d: TestDaemon | undefined;
let dir = '';
afterEach(async () => {
  await d?.stop();
  d = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** tpl, sys-net (the default netvm), work and personal on it, and dvm1 (a disposable template). */
async function stateWithQubes(): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-fw-load-'));
  const first = await startDaemon({ stateDir: dir });
  await first.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await first.ok('admin.property.Set', 'dom0', 'default_template', 'tpl');
  await first.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=sys-net label=red');
  await first.ok('admin.vm.property.Set', 'sys-net', 'netvm', '');
  await first.ok('admin.vm.property.Set', 'sys-net', 'provides_network', 'True');
  await first.ok('admin.property.Set', 'dom0', 'default_netvm', 'sys-net');
  for (const name of ['work', 'personal', 'dvm1'])
    await first.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=blue`);
  await first.ok('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'True');
  await first.ok('admin.vm.firewall.Set', 'dvm1', '', 'action=accept dsthost=10.0.0.1\naction=drop\n');
  await first.stop();
}

const firewallXml = (vm: string): string => join(dir, 'appvms', vm, 'firewall.xml');
const text = (reply: Buffer): string => reply.toString('latin1');
const state = async (vm: string): Promise<string | undefined> =>
  (await d?.ok('admin.vm.List', vm))?.split(' ')[2];

describe('a firewall.xml that cannot be loaded', () => {
  it('keeps only its qube from network: the daemon serves, Get, Reload and Start refuse, Set repairs', async () => {
    await stateWithQubes();
    // Cut off to nothing, as a crash during a write by hand leaves it.
    await writeFile(firewallXml('work'), '');
    d = await startDaemon({ stateDir: dir });
    const reason = 'not well-formed XML (line 1): Start tag expected.';
    expect(d.logs).toContain(
      `warn: work: firewall.xml could not be loaded, its network is refused: ${reason}`,
    );
    const refused = exc('QubesVMError', `firewall.xml of 'work' could not be loaded: ${reason}`);

    expect((await d.ok('admin.vm.List', 'dom0')).split('\n').map((l) => l.split(' ')[0])).toContain('work');
    expect(await d.ok('admin.vm.firewall.Get', 'personal')).toBe('action=accept\n');
    expect(await d.ok('admin.vm.firewall.Get', 'dvm1')).toBe('action=accept dst4=10.0.0.1/32\naction=drop\n');
    await d.ok('admin.vm.feature.Set', 'work', 'f', 'v');
    expect(await d.ok('admin.vm.property.Get', 'work', 'netvm')).toBe('default=True type=vm sys-net');

    expect(text(await d.call('admin.vm.firewall.Get', 'work'))).toBe(refused);
    expect(text(await d.call('admin.vm.firewall.Reload', 'work'))).toBe(refused);
    expect(text(await d.call('admin.vm.Start', 'work'))).toBe(refused);
    expect(d.vmm.calls.filter((c) => c.endsWith(' work'))).toEqual([]);
    expect(await state('work')).toBe('state=Halted');
    expect(await readFile(firewallXml('work'), 'utf8')).toBe('');

    await d.ok('admin.vm.Start', 'personal');
    expect(await state('sys-net')).toBe('state=Running');

    await d.ok('admin.vm.firewall.Set', 'work', '', 'action=accept proto=tcp dstports=443\naction=drop\n');
    expect(await d.ok('admin.vm.firewall.Get', 'work')).toBe(
      'action=accept proto=tcp dstports=443-443\naction=drop\n',
    );
    expect(await readFile(firewallXml('work'), 'utf8')).toContain('<property name="dstports">443</property>');
    await d.ok('admin.vm.firewall.Reload', 'work');
    await d.ok('admin.vm.Start', 'work');
    expect(await state('work')).toBe('state=Running');
  });

  it('takes a file repaired by hand at the next Reload, as upstream loads it again at its next use', async () => {
    await stateWithQubes();
    await writeFile(firewallXml('work'), '<firewall version="2"><rules><rule>');
    d = await startDaemon({ stateDir: dir });
    expect(text(await d.call('admin.vm.firewall.Get', 'work'))).toMatch(/^2\0QubesVMError\0/);
    await writeFile(
      firewallXml('work'),
      '<firewall version="2"><rules><rule><properties><property name="action">drop</property></properties></rule></rules></firewall>\n',
    );
    // Get reads what the daemon holds; Reload is the way to have the file read again.
    expect(text(await d.call('admin.vm.firewall.Get', 'work'))).toMatch(/^2\0QubesVMError\0/);
    await d.ok('admin.vm.firewall.Reload', 'work');
    expect(await d.ok('admin.vm.firewall.Get', 'work')).toBe('action=drop\n');
    await d.ok('admin.vm.Start', 'work');
    expect(await state('work')).toBe('state=Running');
  });

  it('refuses a disposable of a template whose rules cannot be loaded, and leaves nothing of it', async () => {
    await stateWithQubes();
    await writeFile(firewallXml('dvm1'), '<firewall version="3"/>\n');
    const t = await startDaemon({ stateDir: dir });
    d = t;
    const refused = exc(
      'QubesVMError',
      "firewall.xml of 'dvm1' could not be loaded: Unsupported firewall.xml version: 3",
    );
    const qubes = async (): Promise<string[]> =>
      (await t.ok('admin.vm.List', 'dom0'))
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ')[0] ?? '');
    const before = await qubes();

    expect(text(await t.call('admin.vm.CreateDisposable', 'dvm1'))).toBe(refused);
    expect(text(await t.call('admin.vm.Create.DispVM', 'dom0', 'dvm1', 'name=mydisp label=red'))).toBe(
      refused,
    );
    expect(await qubes()).toEqual(before);
    expect(
      (await readdir(join(dir, 'appvms'))).filter((name) => name.startsWith('disp') || name === 'mydisp'),
    ).toEqual([]);
    expect(await readFile(join(dir, 'qubes.xml'), 'utf8')).not.toContain('DispVM');
    // The daemon's disposables of other templates are made as before.
    await t.ok('admin.vm.property.Set', 'personal', 'template_for_dispvms', 'True');
    expect(await t.ok('admin.vm.CreateDisposable', 'personal')).toMatch(/^disp\d+$/);
  });
});
