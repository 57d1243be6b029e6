import { readFileSync, writeFileSync } from 'node:fs';

import { decide, loadPolicy, summaryLine } from '@odyssey/qrexec';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// The policy engine's own test fixtures: a management qube and the qubes it manages, a scratch tree.
import { A } from '../../../qrexec/test/policy/fixtures.js';
import { TempTree } from '../../../qrexec/test/policy/tmp.js';
import {
  ADMIN_POLICY_FILE,
  generateAdminPolicy,
  writeAdminPolicy,
  type PolicyMethod,
} from '../../src/api/admin-policy.js';
import type { Access, Scope } from '../../src/api/method.js';

const m = (name: string, scope: Scope, access: Access, noPolicy = false): PolicyMethod => ({
  name,
  scope,
  access,
  noPolicy,
});

const METHODS: PolicyMethod[] = [
  m('admin.vm.List', 'global', 'r'),
  m('admin.vm.Create.AppVM', 'global', 'w'),
  m('admin.vm.Create.AdminVM', 'global', 'w', true),
  m('admin.vm.property.Get', 'local', 'r'),
  m('admin.vm.property.Set', 'local', 'w'),
  m('admin.vm.Start', 'local', 'x'),
  m('admin.backup.Execute', 'global', 'rx'),
  m('admin.vm.Console', 'local', 'x'),
];

let tree: TempTree;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(() => tree.remove());

describe('default Admin API policy', () => {
  it('produces the main file and the four includes', () => {
    const files = generateAdminPolicy(METHODS);
    expect(files.map((f) => f.path)).toEqual([
      '90-admin-default.policy',
      'include/admin-local-rwx',
      'include/admin-local-ro',
      'include/admin-global-rwx',
      'include/admin-global-ro',
    ]);
    const content = (p: string): string => files.find((f) => f.path === p)?.content ?? '';
    const main = content('90-admin-default.policy');
    expect(main.split('\n').filter((l) => l.startsWith('!'))).toEqual([
      '!include-service admin.vm.Console * include/admin-local-rwx',
      '!include-service admin.vm.volume.Import * include/admin-local-rwx',
      '!include-service admin.vm.volume.ImportWithSize * include/admin-local-rwx',
      '!include-service admin.vm.List * include/admin-global-ro',
      '!include-service admin.vm.Create.AppVM * include/admin-global-rwx',
      '!include-service admin.vm.property.Get * include/admin-local-ro',
      '!include-service admin.vm.property.Set * include/admin-local-rwx',
      '!include-service admin.vm.Start * include/admin-local-rwx',
      '!include-service admin.backup.Execute * include/admin-global-rwx',
    ]);
    expect(
      main.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('!') && !l.startsWith('#')),
    ).toEqual([]);
    const body = (p: string) =>
      content(p)
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(body('include/admin-local-rwx')).toEqual([]);
    expect(body('include/admin-global-rwx')).toEqual([]);
    expect(body('include/admin-local-ro')).toEqual(['!include include/admin-local-rwx']);
    expect(body('include/admin-global-ro')).toEqual(['!include include/admin-global-rwx']);
  });

  it('writes files that load, grant nothing by default, and grant through the includes', async () => {
    const dir = tree.mkdir('policy.d');
    const written = await writeAdminPolicy(dir, METHODS);
    expect(written).toHaveLength(5);
    const s = (source: string, target: string, call: string) =>
      summaryLine(
        decide(loadPolicy({ dirs: [dir], legacyDir: tree.path('none') }), { source, target, call }, A),
      );
    expect(s('mgmtvm', 'dom0', 'admin.vm.List')).toBe('deny no matching rule found');

    writeFileSync(
      tree.path('policy.d/include/admin-local-rwx'),
      'mgmtvm @tag:created-by-mgmtvm allow target=dom0\n',
    );
    writeFileSync(
      tree.path('policy.d/include/admin-global-rwx'),
      readFileSync(tree.path('policy.d/include/admin-global-rwx'), 'utf8') +
        'mgmtvm @adminvm allow target=dom0\n',
    );
    expect(s('mgmtvm', 'work', 'admin.vm.property.Get+netvm')).toBe('allow target=dom0');
    expect(s('mgmtvm', 'work', 'admin.vm.Start')).toBe('allow target=dom0');
    expect(s('mgmtvm', 'personal', 'admin.vm.Start')).toBe('deny no matching rule found');
    expect(s('mgmtvm', 'dom0', 'admin.vm.List')).toBe('allow target=dom0');
    expect(s('mgmtvm', 'dom0', 'admin.vm.Create.AppVM+fedora-25')).toBe('allow target=dom0');
    expect(s('mgmtvm', 'dom0', 'admin.vm.Create.AdminVM')).toBe('deny no matching rule found');

    // Regenerating keeps the administrator's grants unless told otherwise.
    expect(await writeAdminPolicy(dir, METHODS)).toEqual([tree.path(`policy.d/${ADMIN_POLICY_FILE}`)]);
    expect(s('mgmtvm', 'work', 'admin.vm.Start')).toBe('allow target=dom0');
    expect(await writeAdminPolicy(dir, METHODS, { overwriteIncludes: true })).toHaveLength(5);
    expect(s('mgmtvm', 'work', 'admin.vm.Start')).toBe('deny no matching rule found');
  });
});
