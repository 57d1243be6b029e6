import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decideLegacy,
  LegacyPolicy,
  memoryPolicyFiles,
  parseLegacyRule,
  PolicySyntaxError,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { DEMO, T } from './fixtures.js';
import { TempTree } from './tmp.js';

let tree: TempTree;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(() => tree.remove());

const at = { file: 'f', line: 3 };

describe('R4.0 line syntax', () => {
  it('parses options separated by commas or spaces', () => {
    expect(parseLegacyRule('test-mon @adminvm allow,target=@adminvm', at)).toEqual({
      file: 'f',
      line: 3,
      source: 'test-mon',
      target: '@adminvm',
      action: 'allow',
      overrideTarget: '@adminvm',
      user: null,
      defaultTarget: null,
    });
    expect(parseLegacyRule('@anyvm @dispvm ask, default_target=@dispvm user=u', at)).toMatchObject({
      action: 'ask',
      defaultTarget: '@dispvm',
      user: 'u',
    });
  });

  it.each([
    ['@anyvm', 'wrong number of fields'],
    ['@anyvm @anyvm frob', 'invalid action: frob'],
    ['@anyvm @anyvm allow,target', 'invalid action parameter syntax: target'],
    ['@anyvm @anyvm allow,target=a=b', 'invalid action parameter syntax: target=a=b'],
    ['@anyvm @anyvm deny,target=dom0', 'target= option not allowed for deny action'],
    ['@anyvm @anyvm deny,user=root', 'user= option not allowed for deny action'],
    ['@anyvm @anyvm allow,default_target=dom0', 'default_target= option allowed only for ask action'],
    ['@anyvm @anyvm allow,notify=no', 'invalid option notify=no for allow action'],
    ['@dispvm @anyvm allow', 'invalid source specification: @dispvm'],
    ['@default @anyvm allow', 'invalid source specification: @default'],
    ['@anyvm @tag: allow', 'invalid target specification: @tag:'],
    ['@anyvm @default allow', 'allow action for @default rule must specify target= option'],
    ['@anyvm @anyvm allow,target=@tag:x', 'target= option needs to name specific target'],
    ['@anyvm @anyvm ask,default_target=@anyvm', 'target= option needs to name specific target'],
  ])('%j: %s', (line, detail) => {
    expect(() => parseLegacyRule(line, at)).toThrow(new PolicySyntaxError(at, detail));
  });
});

describe('R4.0 engine', () => {
  const files = (tree: Record<string, string>) => memoryPolicyFiles(tree);
  const s = (policy: Record<string, string>, call: string, source: string, target: string, info = T) =>
    summaryLine(decideLegacy('/p', { source, target, call }, info, files(policy)));

  it('prefers SERVICE+ARG over SERVICE, and whole files replace each other', () => {
    const p = { '/p/svc': '$anyvm $anyvm allow\n', '/p/svc+x': 'test-vm1 test-vm3 allow\n' };
    expect(s(p, 'svc+x', 'test-vm1', 'test-vm3')).toBe('allow target=test-vm3');
    expect(s(p, 'svc+x', 'test-vm1', 'test-vm2')).toBe('deny no matching rule found');
    expect(s(p, 'svc+y', 'test-vm1', 'test-vm2')).toBe('allow target=test-vm2');
    expect(s(p, 'svc', 'test-vm1', 'test-vm2')).toBe('allow target=test-vm2');
    expect(s(p, 'other', 'test-vm1', 'test-vm2')).toBe('deny Policy not found for service other');
  });

  it('dom0 matches only when named, never through $anyvm, $tag or $type', () => {
    const p = {
      '/p/svc':
        '$anyvm $tag:dom0-tag allow\n$anyvm $type:AdminVM allow\n$anyvm $anyvm deny\ntest-vm1 dom0 allow\n',
    };
    expect(s(p, 'svc', 'test-vm1', 'dom0')).toBe('allow target=dom0');
    expect(s(p, 'svc', 'test-vm1', '@adminvm')).toBe('allow target=dom0');
    expect(s(p, 'svc', 'test-vm2', 'dom0')).toBe('deny no matching rule found');
  });

  it('$default, target= and $dispvm', () => {
    const p = {
      '/p/svc': [
        'test-vm1 $default allow,target=test-vm2',
        'test-vm2 $dispvm allow',
        'test-vm3 $anyvm allow,target=$dispvm',
        'test-no-dvm $dispvm allow',
        '$anyvm $dispvm:$tag:tag3 allow',
        '$anyvm $anyvm deny',
      ].join('\n'),
    };
    expect(s(p, 'svc', 'test-vm1', '')).toBe('allow target=test-vm2');
    expect(s(p, 'svc', 'test-vm1', 'no-such-vm')).toBe('allow target=test-vm2');
    expect(s(p, 'svc', 'test-vm2', '@dispvm')).toBe('allow target=@dispvm:default-dvm');
    expect(s(p, 'svc', 'test-vm3', 'test-vm1')).toBe('allow target=@dispvm:default-dvm');
    expect(s(p, 'svc', 'test-no-dvm', '@dispvm')).toBe(
      "deny policy define 'allow' action to @dispvm at /p/svc:4 but no DispVM base is set for this VM",
    );
    expect(s(p, 'svc', 'test-vm4', '@dispvm:test-vm3')).toBe('allow target=@dispvm:test-vm3');
    expect(s(p, 'svc', 'test-vm4', '@dispvm:test-vm4')).toBe('deny denied by policy /p/svc:6');
  });

  it('ask offers expanded targets minus denied ones and the source', () => {
    const p = { '/p/svc': 'test-vm1 $tag:tag2 ask,default_target=test-vm2\ntest-vm1 $adminvm allow\n' };
    const out = decideLegacy('/p', { source: 'test-vm1', target: 'test-vm2', call: 'svc' }, T, files(p));
    expect(out.decision).toMatchObject({
      result: 'ask',
      targets: ['dom0', 'test-invalid-dvm', 'test-no-dvm', 'test-standalone', 'test-template', 'test-vm2'],
      defaultTarget: 'test-vm2',
    });
    expect(out.response).toBeNull();
  });

  it('answers qrexec-daemon as the current engine does, loopback included', () => {
    const p = { '/p/svc': '$anyvm $anyvm allow,user=root\n' };
    expect(
      decideLegacy('/p', { source: 'test-vm1', target: 'test-vm2', call: 'svc' }, T, files(p)).response,
    ).toBe(
      'user=root\nresult=allow\ntarget=test-vm2\ntarget_uuid=uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4\nautostart=True\nrequested_target=test-vm2',
    );
    expect(s(p, 'svc', 'test-vm1', 'test-vm1')).toBe('deny loopback qrexec connection not supported');
  });

  it('reports syntax errors with file and line', () => {
    expect(s({ '/p/svc': '# c\n$anyvm $anyvm allow,bogus=1\n' }, 'svc', 'test-vm1', 'test-vm2')).toBe(
      'deny /p/svc:2: invalid option bogus=1 for allow action',
    );
  });

  it('runs the announcement demos from real files', () => {
    const dir = tree.mkdir('policy');
    tree.write(
      'policy/admin.vm.List',
      'test-mon $adminvm allow,target=$adminvm\ntest-mon $anyvm allow,target=$adminvm\n',
    );
    tree.write('policy/admin.vm.Create.AppVM', 'test-mgmt $adminvm allow,target=$adminvm\n');
    tree.write('policy/admin.vm.property.Set', '$include:include/admin-local-rwx\n');
    tree.write(
      'policy/include/admin-local-rwx',
      'test-mgmt $tag:created-by-test-mgmt allow,target=$adminvm\n',
    );
    const d = (source: string, target: string, call: string) =>
      decideLegacy(dir, { source, target, call }, DEMO);
    expect(summaryLine(d('test-mon', 'dom0', 'admin.vm.List'))).toBe('allow target=dom0');
    expect(d('test-mon', 'sys-net', 'admin.vm.List').response).toBe(
      'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=sys-net',
    );
    expect(summaryLine(d('test-mgmt', '@adminvm', 'admin.vm.Create.AppVM+fedora-25'))).toBe(
      'allow target=dom0',
    );
    expect(summaryLine(d('test-mgmt', 'managed-work', 'admin.vm.property.Set+netvm'))).toBe(
      'allow target=dom0',
    );
    expect(summaryLine(d('test-mgmt', 'sys-net', 'admin.vm.property.Set+netvm'))).toBe(
      'deny no matching rule found',
    );
    expect(
      LegacyPolicy.load(dir, 'admin.vm.property.Set+netvm').rules.map(
        (r) => `${r.file.slice(dir.length)}:${r.line}`,
      ),
    ).toEqual(['/include/admin-local-rwx:1']);
  });
});
