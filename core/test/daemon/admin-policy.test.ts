import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { METHODS } from '../../src/api/method-table.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { generateAdminPolicy } from '../../src/api/admin-policy.js';
import { rawCall, request } from '../support/harness.js';
import { FakeVmm } from '../support/fake-vmm.js';

/** Upstream's generated classification (qrexec-vchan-reference §1.5), as facts to check against. */
const UPSTREAM: Record<string, string[]> = {
  'admin-global-ro': [
    'admin.Events',
    'admin.deviceclass.List',
    'admin.label.Get',
    'admin.label.Index',
    'admin.label.List',
    'admin.pool.Info',
    'admin.pool.List',
    'admin.pool.ListDrivers',
    'admin.pool.UsageDetails',
    'admin.pool.volume.List',
    'admin.property.Get',
    'admin.property.GetAll',
    'admin.property.GetDefault',
    'admin.property.Help',
    'admin.property.List',
    'admin.vm.List',
    'admin.vm.Stats',
    'admin.vmclass.List',
  ],
  'admin-global-rwx': [
    'admin.backup.Cancel',
    'admin.backup.Execute',
    'admin.label.Create',
    'admin.label.Remove',
    'admin.pool.Add',
    'admin.pool.Remove',
    'admin.pool.Set.ephemeral_volatile',
    'admin.pool.Set.revisions_to_keep',
    'admin.property.Reset',
    'admin.property.Set',
    ...['AppVM', 'DispVM', 'RemoteVM', 'StandaloneVM', 'TemplateVM'].flatMap((c) => [
      `admin.vm.Create.${c}`,
      `admin.vm.CreateInPool.${c}`,
    ]),
    'admin.vm.CreateDisposable',
    'admin.vm.Remove',
  ],
  'admin-local-ro': [
    'admin.backup.Info',
    'admin.vm.CurrentState',
    ...['pci', 'block'].flatMap((c) =>
      ['Assigned', 'Attached', 'Available'].map((m) => `admin.vm.device.${c}.${m}`),
    ),
    'admin.vm.device.denied.List',
    ...[
      'CheckWithAdminVM',
      'CheckWithNetvm',
      'CheckWithTemplate',
      'CheckWithTemplateAndAdminVM',
      'Get',
      'List',
    ].map((m) => `admin.vm.feature.${m}`),
    'admin.vm.firewall.Get',
    'admin.vm.notes.Get',
    ...['Get', 'GetAll', 'GetDefault', 'Help', 'List'].map((m) => `admin.vm.property.${m}`),
    'admin.vm.tag.Get',
    'admin.vm.tag.List',
    'admin.vm.volume.Info',
    'admin.vm.volume.List',
    'admin.vm.volume.ListSnapshots',
  ],
  'admin-local-rwx': [
    ...['Console', 'Kill', 'Pause', 'Resume', 'Shutdown', 'Start', 'Suspend', 'Unpause'].map(
      (m) => `admin.vm.${m}`,
    ),
    ...['pci', 'block'].flatMap((c) =>
      ['Assign', 'Attach', 'Detach', 'Set.assignment', 'Unassign'].map((m) => `admin.vm.device.${c}.${m}`),
    ),
    'admin.vm.device.denied.Add',
    'admin.vm.device.denied.Remove',
    'admin.vm.feature.Remove',
    'admin.vm.feature.Set',
    'admin.vm.firewall.Reload',
    'admin.vm.firewall.Set',
    'admin.vm.notes.Set',
    'admin.vm.property.Reset',
    'admin.vm.property.Set',
    'admin.vm.tag.Remove',
    'admin.vm.tag.Set',
    ...[
      'Clear',
      'CloneFrom',
      'CloneTo',
      'Resize',
      'Revert',
      'Set.ephemeral',
      'Set.revisions_to_keep',
      'Set.rw',
    ].map((m) => `admin.vm.volume.${m}`),
    // From upstream's hand-written header: executable services, not socket methods.
    'admin.vm.volume.Import',
    'admin.vm.volume.ImportWithSize',
  ],
};

describe('default Admin API policy from the method table', () => {
  it('puts every method in the include upstream puts it in', () => {
    const main = generateAdminPolicy(METHODS).find((f) => f.path === '90-admin-default.policy');
    const generated = new Map<string, string>();
    for (const m of (main?.content ?? '').matchAll(/^!include-service (\S+) \* include\/(\S+)$/gm)) {
      generated.set(m[1] as string, m[2] as string);
    }
    const upstream = new Map(
      Object.entries(UPSTREAM).flatMap(([inc, ms]) => ms.map((m) => [m, inc] as const)),
    );
    for (const [method, inc] of generated) {
      if (upstream.has(method)) expect([method, inc]).toEqual([method, upstream.get(method)]);
    }
    expect([...upstream.keys()].filter((m) => !generated.has(m)).sort()).toEqual([]);
    // Our own methods live in admin.odyssey.*, a namespace upstream never uses.
    expect([...generated.keys()].filter((m) => !upstream.has(m))).toEqual([
      'admin.odyssey.vm.ListWithProperties',
    ]);
    expect(generated.get('admin.odyssey.vm.ListWithProperties')).toBe('admin-global-ro');
  });
});

describe('callers other than dom0', () => {
  const dirs: string[] = [];
  let daemon: Daemon | null = null;
  afterEach(async () => {
    await daemon?.stop();
    daemon = null;
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('see in admin.vm.List and admin.Events only what the policy allows, and the internal socket serves system info', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-pol-'));
    dirs.push(dir);
    const policyDir = join(dir, 'policy.d');
    await mkdir(policyDir);
    await writeFile(
      join(policyDir, '30-test.policy'),
      'admin.vm.List * mgmt @tag:created-by-mgmt allow target=dom0\nadmin.vm.List * mgmt mgmt allow target=dom0\n' +
        'admin.Events * mgmt @tag:created-by-mgmt allow target=dom0\n' +
        'admin.vm.property.GetAll * mgmt @tag:created-by-mgmt allow target=dom0\n',
    );
    daemon = await Daemon.start({
      socketPath: join(dir, 'q.sock'),
      internalSocketPath: join(dir, 'q.internal.sock'),
      stateDir: join(dir, 'state'),
      backend: new FakeVmm(),
      policyDirs: [policyDir],
      log: () => undefined,
    });
    const sock = join(dir, 'q.sock');
    const ok = async (...a: Parameters<typeof request>) => {
      const r = await rawCall(sock, request(...a));
      expect(r.toString('latin1').slice(0, 2)).toBe('0\0');
      return r.subarray(2).toString();
    };
    await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=mgmt label=green');
    await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=other label=red');
    await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=mine label=red', 'mgmt');
    expect(await ok('admin.vm.tag.List', 'mine')).toBe('audiovm-dom0\ncreated-by-mgmt\nguivm-dom0\n');
    const listed = (await ok('admin.vm.List', 'dom0', '', '', 'mgmt'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]);
    expect(listed).toEqual(['mgmt', 'mine']);
    expect((await ok('admin.vm.List', 'dom0')).split('\n').filter(Boolean).length).toBe(4);
    // The bulk listing: the qubes mgmt may list, properties only of those whose GetAll it is granted.
    const blocks = (await ok('admin.odyssey.vm.ListWithProperties', 'dom0', '', '', 'mgmt')).split('\n\n');
    expect(blocks.map((b) => b.split(' ')[0])).toEqual(['mgmt', 'mine', '']);
    expect(blocks[0]?.split('\n')).toHaveLength(1);
    expect(`${(blocks[1] ?? '').split('\n').slice(1).join('\n')}\n`).toBe(
      await ok('admin.vm.property.GetAll', 'mine'),
    );
    const r = await rawCall(sock, request('admin.vm.tag.Remove', 'mine', 'created-by-mgmt', '', 'mgmt'));
    expect(r.toString('latin1')).toBe(
      '2\0PermissionDenied\0\0changing this tag is prohibited by qubes.ext.admin.AdminExtension\0',
    );
    const info = JSON.parse(
      (await rawCall(join(dir, 'q.internal.sock'), request('internal.GetSystemInfo', 'dom0')))
        .subarray(2)
        .toString(),
    ) as { domains: Record<string, { tags: string[]; type: string; power_state: string }> };
    expect(info.domains.mine).toMatchObject({
      tags: ['audiovm-dom0', 'created-by-mgmt', 'guivm-dom0'],
      type: 'StandaloneVM',
      power_state: 'Halted',
    });
    expect(info.domains.dom0).toMatchObject({ type: 'AdminVM', power_state: 'Running' });
  });
});
