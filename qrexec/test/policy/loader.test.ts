import { symlinkSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decide,
  formatRule,
  loadPolicy,
  parsePolicyText,
  PolicySyntaxError,
  type LoadResult,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { A, DEMO, T } from './fixtures.js';
import { TempTree } from './tmp.js';

let tree: TempTree;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(() => tree.remove());

const load = (dirs: string[], legacyDir = tree.path('legacy')): LoadResult => loadPolicy({ dirs, legacyDir });
const summary = (state: LoadResult, source: string, target: string, call: string, info = T): string =>
  summaryLine(decide(state, { source, target, call }, info));
const rulesOf = (state: LoadResult): string[] => {
  if (!state.policy) throw state.error;
  return state.policy.rules.map(
    (r) => `${r.file.slice(tree.root.length + 1)}:${r.line ?? '-'} ${formatRule(r)}`,
  );
};

describe('policy directories', () => {
  it('merges runtime and system dirs by basename, runtime first, sorted by basename', () => {
    const run = tree.mkdir('run');
    const etc = tree.mkdir('etc');
    tree.write('etc/50-b.policy', 'svc.B * @anyvm @anyvm deny\n');
    tree.write('etc/30-a.policy', 'svc.A * @anyvm @anyvm deny\n');
    tree.write('run/30-a.policy', 'svc.A * @anyvm @anyvm allow target=dom0\n');
    tree.write('run/70-c.policy', 'svc.C * @anyvm @anyvm deny\n');
    expect(rulesOf(load([run, etc]))).toEqual([
      'run/30-a.policy:1 svc.A\t*\t@anyvm\t@anyvm\tallow target=dom0',
      'etc/50-b.policy:1 svc.B\t*\t@anyvm\t@anyvm\tdeny',
      'run/70-c.policy:1 svc.C\t*\t@anyvm\t@anyvm\tdeny',
    ]);
  });

  it('ignores other suffixes, dotfiles and non-files; a missing dir is empty', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/10-a.policy', 'svc.A * @anyvm @anyvm deny\n');
    tree.write('etc/.hidden.policy', 'garbage\n');
    tree.write('etc/README', 'garbage\n');
    tree.write('etc/10-a.policy.rpmnew', 'garbage\n');
    tree.mkdir('etc/dir.policy');
    tree.write('etc/include/x', 'garbage\n');
    symlinkSync(tree.path('etc/10-a.policy'), tree.path('etc/20-link.policy'));
    expect(rulesOf(load([tree.path('nowhere'), etc]))).toEqual([
      'etc/10-a.policy:1 svc.A\t*\t@anyvm\t@anyvm\tdeny',
      'etc/20-link.policy:1 svc.A\t*\t@anyvm\t@anyvm\tdeny',
    ]);
  });

  it('a badly named policy file denies everything', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/10-a.policy', '* * @anyvm @anyvm allow\n');
    tree.write('etc/20-Bad.policy', '* * @anyvm @anyvm allow\n');
    const state = load([etc]);
    expect(state.error?.message).toBe(`invalid filename: ${tree.path('etc/20-Bad.policy')}`);
    expect(summary(state, 'test-vm1', 'test-vm2', 'svc')).toBe(
      `deny invalid filename: ${tree.path('etc/20-Bad.policy')}`,
    );
  });

  it('a syntax error in any file denies every call and names file and line', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/10-good.policy', '* * @anyvm @anyvm allow\n');
    tree.write('etc/20-bad.policy', '# comment\n\nsvc * @anyvm @anyvm allow notify=maybe\n');
    const state = load([etc]);
    expect(state.error).toBeInstanceOf(PolicySyntaxError);
    const msg = `${tree.path('etc/20-bad.policy')}:3: 'notify' is 'maybe', but can be only 'yes' or 'no'`;
    expect(state.error?.message).toBe(msg);
    expect(summary(state, 'test-vm1', 'test-vm2', 'other')).toBe(`deny ${msg}`);
  });

  it('handles CRLF, CR, indentation and trailing comments-only lines', () => {
    const etc = tree.mkdir('etc');
    tree.write(
      'etc/10-a.policy',
      '# x\r\n   svc.A * @anyvm @anyvm deny   \r\n\tsvc.B * @anyvm @anyvm deny\rsvc.C * @anyvm @anyvm deny',
    );
    expect(rulesOf(load([etc])).map((r) => r.split(' ')[0])).toEqual([
      'etc/10-a.policy:2',
      'etc/10-a.policy:3',
      'etc/10-a.policy:4',
    ]);
  });
});

describe('directives', () => {
  it('!include is relative to the top-level file directory, also when nested', () => {
    const etc = tree.mkdir('etc');
    tree.write(
      'etc/30-main.policy',
      'svc.A * test-vm1 test-vm2 allow\n!include include/one\nsvc.C * @anyvm @anyvm deny\n',
    );
    tree.write('etc/include/one', 'svc.B * test-vm3 @default allow target=test-vm2\n!include include/two\n');
    tree.write('etc/include/two', 'svc.D * @anyvm @anyvm deny\n');
    expect(rulesOf(load([etc]))).toEqual([
      'etc/30-main.policy:1 svc.A\t*\ttest-vm1\ttest-vm2\tallow',
      'etc/include/one:1 svc.B\t*\ttest-vm3\t@default\tallow target=test-vm2',
      'etc/include/two:1 svc.D\t*\t@anyvm\t@anyvm\tdeny',
      'etc/30-main.policy:3 svc.C\t*\t@anyvm\t@anyvm\tdeny',
    ]);
  });

  it('!include-dir loads the valid *.policy files of a directory', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/30-main.policy', '!include-dir extra\nsvc.Z * @anyvm @anyvm deny\n');
    tree.write('etc/extra/b.policy', 'svc.B * @anyvm @anyvm deny\n');
    tree.write('etc/extra/a.policy', 'svc.A * @anyvm @anyvm deny\n');
    tree.write('etc/extra/c.txt', 'garbage');
    expect(rulesOf(load([etc])).map((r) => r.split('\t')[0])).toEqual([
      'etc/extra/a.policy:1 svc.A',
      'etc/extra/b.policy:1 svc.B',
      'etc/30-main.policy:2 svc.Z',
    ]);
    tree.write('etc/extra/BAD.policy', '');
    expect(load([etc]).error?.message).toBe(`invalid filename: ${tree.path('etc/extra/BAD.policy')}`);
  });

  it('!include-service reads old syntax bound to the service', () => {
    const etc = tree.mkdir('etc');
    tree.write(
      'etc/30-main.policy',
      '!include-service * * new-syntax\n!include-service svc.X +arg old-syntax\n',
    );
    tree.write(
      'etc/new-syntax',
      'test-vm2 test-vm3 ask\n  # comment  \n@anyvm @dispvm ask default_target=@dispvm\n',
    );
    tree.write(
      'etc/old-syntax',
      'test-vm2 test-vm3 ask\n$anyvm $dispvm ask,default_target=$dispvm\n$include:more\n',
    );
    tree.write('etc/more', '$tag:tag1 $adminvm allow,target=$adminvm,user=root\n');
    expect(rulesOf(load([etc]))).toEqual([
      'etc/new-syntax:1 *\t*\ttest-vm2\ttest-vm3\task',
      'etc/new-syntax:3 *\t*\t@anyvm\t@dispvm\task default_target=@dispvm',
      'etc/old-syntax:1 svc.X\t+arg\ttest-vm2\ttest-vm3\task',
      'etc/old-syntax:2 svc.X\t+arg\t@anyvm\t@dispvm\task default_target=@dispvm',
      'etc/more:1 svc.X\t+arg\t@tag:tag1\t@adminvm\tallow target=@adminvm user=root',
    ]);
  });

  it.each([
    ['!include', 'invalid number of params', 1],
    ['!include a b', 'invalid number of params', 1],
    ['!include-dir', 'invalid number of params', 1],
    ['!include-service svc *', 'invalid number of params', 1],
    ['!include-service * +arg x', 'only * argument allowed for * service', 1],
    ['!include-service svc arg x', "argument 'arg' does not start with +", 1],
    ['!compat-4.0 extra', 'invalid number of params', 1],
    ['!frobnicate', 'invalid directive', 1],
    ['# ok\n!include nothing-here', `not a file: ${'<etc>/nothing-here'}`, 2],
    ['!include-dir nothing-here', `not a directory: ${'<etc>/nothing-here'}`, 1],
  ])('%j is an error', (text, detail, line) => {
    const etc = tree.mkdir('etc');
    const file = tree.write('etc/30-main.policy', text);
    tree.write('etc/x', '');
    expect(load([etc]).error?.message).toBe(`${file}:${line}: ${detail.replace('<etc>', etc)}`);
  });

  it('old-syntax files allow only !include', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/30-main.policy', '!include-service svc * old\n');
    const old = tree.write('etc/old', '@anyvm @anyvm deny\n!include-dir x\n');
    expect(load([etc]).error?.message).toBe(`${old}:2: invalid directive`);
  });

  it('an include loop is a syntax error, not a crash', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/30-main.policy', '!include a\n');
    const a = tree.write('etc/a', '!include b\n');
    const b = tree.write('etc/b', '# loop\n!include a\n');
    expect(load([etc]).error?.message).toBe(`${b}:2: include loop: ${a}`);
  });
});

describe('!compat-4.0', () => {
  it('walks services sorted, +arg files before the generic one, with implicit denies after +arg files', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/35-compat.policy', '!compat-4.0\n');
    tree.write('legacy/svc.B', '$anyvm $anyvm allow\n');
    tree.write('legacy/svc.A', 'test-vm1 test-vm2 allow\n');
    tree.write('legacy/svc.A+z', 'test-vm1 test-vm3 allow\n');
    tree.write('legacy/svc.A+b', 'test-vm1 test-vm4 allow\n');
    tree.write('legacy/svc.A.rpmnew', 'garbage\n');
    tree.write('legacy/.svc.C', 'garbage\n');
    tree.write('legacy/svc C', 'garbage\n');
    tree.write('legacy/include/admin-local-rwx', 'garbage\n');
    expect(rulesOf(load([etc]))).toEqual([
      'legacy/svc.A+b:1 svc.A\t+b\ttest-vm1\ttest-vm4\tallow',
      'legacy/svc.A+b:- svc.A\t+b\t@anyvm\t@anyvm\tdeny',
      'legacy/svc.A+b:- svc.A\t+b\t@anyvm\t@adminvm\tdeny',
      'legacy/svc.A+z:1 svc.A\t+z\ttest-vm1\ttest-vm3\tallow',
      'legacy/svc.A+z:- svc.A\t+z\t@anyvm\t@anyvm\tdeny',
      'legacy/svc.A+z:- svc.A\t+z\t@anyvm\t@adminvm\tdeny',
      'legacy/svc.A:1 svc.A\t*\ttest-vm1\ttest-vm2\tallow',
      'legacy/svc.B:1 svc.B\t*\t@anyvm\t@anyvm\tallow',
    ]);
  });

  it('falls through after generic files but not after +arg files (upstream TC_90)', () => {
    const policy = parsePolicyText(
      'test.AllowBefore * @anyvm @anyvm allow\n!compat-4.0\ntest.AllowAfter * @anyvm @anyvm allow\ntest.ImplicitDeny * @anyvm @anyvm allow',
      {
        legacy: {
          'test.AllowAfter': 'test-vm1 test-vm2 allow\n',
          'test.ImplicitDeny+arg': 'test-vm1 test-vm2 allow\n',
        },
      },
    );
    const s = (call: string, target: string) =>
      summaryLine(decide(policy, { source: 'test-vm1', target, call }, T));
    expect(s('test.AllowAfter', 'test-vm2')).toBe('allow target=test-vm2');
    expect(s('test.AllowAfter', 'test-vm3')).toBe('allow target=test-vm3');
    expect(s('test.ImplicitDeny+arg', 'test-vm3')).toBe(
      'deny denied by policy /legacy/test.ImplicitDeny+arg:-',
    );
    expect(s('test.ImplicitDeny+arg', 'dom0')).toBe('deny denied by policy /legacy/test.ImplicitDeny+arg:-');
    expect(s('test.ImplicitDeny+other', 'test-vm3')).toBe('allow target=test-vm3');
  });

  it('includes inside legacy files are relative to the legacy directory', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/35-compat.policy', '!compat-4.0\n');
    tree.write('legacy/admin.vm.List', '$include:include/admin-global-ro\n');
    tree.write('legacy/include/admin-global-ro', 'mgmtvm $adminvm allow,target=$adminvm\n');
    expect(summary(load([etc]), 'mgmtvm', 'dom0', 'admin.vm.List', A)).toBe('allow target=dom0');
  });

  it('legacy files may not use !compat-4.0', () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/35-compat.policy', '!compat-4.0\n');
    const f = tree.write('legacy/svc', '!compat-4.0\n');
    expect(load([etc]).error?.message).toBe(`${f}:1: invalid directive`);
  });
});

describe('Admin API announcement demos in the legacy syntax', () => {
  it('test-mon and test-mgmt rules through !include-service and the admin includes', () => {
    const etc = tree.mkdir('etc');
    tree.write(
      'etc/90-admin-default.policy',
      [
        '!include-service admin.vm.List * include/admin-global-ro',
        '!include-service admin.label.List * include/admin-global-ro',
        '!include-service admin.vm.property.Set * include/admin-local-rwx',
        '!include-service admin.vm.property.Get * include/admin-local-ro',
      ].join('\n'),
    );
    tree.write('etc/include/admin-local-rwx', 'test-mgmt $tag:created-by-test-mgmt allow,target=$adminvm\n');
    tree.write('etc/include/admin-local-ro', '!include include/admin-local-rwx\n');
    tree.write('etc/include/admin-global-rwx', '');
    tree.write(
      'etc/include/admin-global-ro',
      '!include include/admin-global-rwx\ntest-mon $adminvm allow,target=$adminvm\ntest-mon $anyvm allow,target=$adminvm\ntest-mgmt $adminvm allow,target=$adminvm\n',
    );
    const state = load([etc]);
    const s = (source: string, target: string, call: string) => summary(state, source, target, call, DEMO);
    expect(s('test-mon', 'dom0', 'admin.vm.List')).toBe('allow target=dom0');
    expect(s('test-mon', 'sys-net', 'admin.vm.List')).toBe('allow target=dom0');
    expect(s('test-mon', '@adminvm', 'admin.label.List')).toBe('allow target=dom0');
    expect(s('test-mon', 'managed-work', 'admin.vm.property.Set+netvm')).toBe('deny no matching rule found');
    expect(s('test-mgmt', 'managed-work', 'admin.vm.property.Set+netvm')).toBe('allow target=dom0');
    expect(s('test-mgmt', 'managed-work', 'admin.vm.property.Get+netvm')).toBe('allow target=dom0');
    expect(s('test-mgmt', 'sys-net', 'admin.vm.property.Set+netvm')).toBe('deny no matching rule found');
    expect(s('test-mgmt', 'dom0', 'admin.vm.List')).toBe('allow target=dom0');
    const d = decide(
      state,
      { source: 'test-mgmt', target: 'managed-work', call: 'admin.vm.property.Set+netvm' },
      DEMO,
    );
    expect(d.response).toBe(
      'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=managed-work',
    );
  });
});
