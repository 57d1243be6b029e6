import { describe, expect, it } from 'vitest';
import {
  decide,
  parsePolicyText,
  PolicySyntaxError,
  type Outcome,
  type PolicyState,
  type SystemInfo,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { A, ADMIN_POLICY, T, UUID, allowLines, dom0Lines } from './fixtures.js';

interface Vector {
  readonly id: string;
  readonly policy: string | Record<string, string>;
  readonly legacy?: Record<string, string>;
  readonly info: SystemInfo;
  readonly call: string;
  readonly source: string;
  readonly target: string;
  readonly summary: string;
  readonly response?: string | null;
  readonly notify?: boolean;
  readonly origin?: string;
}

const TWO_RULES = '* * test-vm1 test-vm2 allow\n* * test-vm1 @anyvm deny';

// §2 of the qrexec reference: numbered black-box vectors, each checked on
// the first CLI line (the decision) and on the exact qrexec-daemon reply.
const VECTORS: Vector[] = [
  {
    id: '1 first match wins',
    policy: TWO_RULES,
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm2',
    summary: 'allow target=test-vm2',
    response: allowLines('test-vm2', 'test-vm2', `uuid:${UUID(T, 'test-vm2')}`),
    origin: '__main__:1',
  },
  {
    id: '2 no rule for the reverse direction',
    policy: '* * test-vm1 test-vm2 allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm2',
    target: 'test-vm1',
    summary: 'deny no matching rule found',
    response: 'result=deny',
    notify: true,
  },
  {
    id: '3 @anyvm excludes dom0',
    policy: '* * @anyvm @anyvm allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'dom0',
    summary: 'deny no matching rule found',
    response: 'result=deny',
  },
  {
    id: '4 empty target uses target=',
    policy: '* * test-vm1 @default allow target=test-vm2',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: '',
    summary: 'allow target=test-vm2',
    response: allowLines('test-vm2', '@default', `uuid:${UUID(T, 'test-vm2')}`),
  },
  {
    id: '5 @anyvm matches @default but there is no target',
    policy: '* * @anyvm @anyvm allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: '@default',
    summary: "deny policy define 'allow' action at __main__:1 but no target is specified by caller or policy",
    response: 'result=deny',
  },
  {
    id: '6 @dispvm resolves to default_dispvm',
    policy: '* * @anyvm @dispvm allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm3',
    target: '@dispvm',
    summary: 'allow target=@dispvm:default-dvm',
    response: allowLines(
      '@dispvm:default-dvm',
      '@dispvm',
      '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21',
    ),
  },
  {
    id: '7a exact argument',
    policy: 'test.Service +arg1 @anyvm @anyvm allow\ntest.Service * @anyvm @anyvm deny',
    info: T,
    call: 'test.Service+arg1',
    source: 'test-vm1',
    target: 'test-vm2',
    summary: 'allow target=test-vm2',
    origin: '__main__:1',
  },
  {
    id: '7b other argument falls to the deny',
    policy: 'test.Service +arg1 @anyvm @anyvm allow\ntest.Service * @anyvm @anyvm deny',
    info: T,
    call: 'test.Service+arg2',
    source: 'test-vm1',
    target: 'test-vm2',
    summary: 'deny denied by policy __main__:2',
    response: 'result=deny',
    notify: true,
    origin: '__main__:2',
  },
  {
    id: '8 @tag source, @type target',
    policy: '* * @tag:tag1 @type:AppVM allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm3',
    summary: 'allow target=test-vm3',
    response: allowLines('test-vm3', 'test-vm3', `uuid:${UUID(T, 'test-vm3')}`),
  },
  {
    id: '9 ask with default_target',
    policy: '* * @tag:tag1 test-vm3 ask default_target=test-vm3\n* * @anyvm @anyvm deny',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm3',
    summary: 'ask default_target=test-vm3',
    response: null,
  },
  {
    id: '10 autostart=no and a halted target',
    policy: '* * test-vm1 test-vm3 allow autostart=no',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm3',
    summary: 'deny target test-vm3 is denied because it would require autostart',
    response: 'result=deny',
    notify: false,
  },
  {
    id: '11 deny notify=no',
    policy: '* * @anyvm @anyvm deny notify=no',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm2',
    summary: 'deny denied by policy __main__:1',
    response: 'result=deny',
    notify: false,
  },
  {
    id: '12 loopback is refused at execution',
    policy: '* * @anyvm @anyvm allow',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'test-vm1',
    summary: 'deny loopback qrexec connection not supported',
    response: 'result=deny',
  },
  {
    id: '13 managed qube, redirected to dom0',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.property.Get+netvm',
    source: 'mgmtvm',
    target: 'work',
    summary: 'allow target=dom0',
    response: 'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=work',
    origin: 'include/admin-local-rwx:1',
  },
  {
    id: '14 unmanaged qube',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.property.Set+netvm',
    source: 'mgmtvm',
    target: 'personal',
    summary: 'deny no matching rule found',
    response: 'result=deny',
  },
  {
    id: '15 global call without argument',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.List',
    source: 'mgmtvm',
    target: 'dom0',
    summary: 'allow target=dom0',
    response: dom0Lines('dom0'),
    origin: 'include/admin-global-ro:2',
  },
  {
    id: '16 argument-specific grant',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.Create.AppVM+fedora-25',
    source: 'mgmtvm',
    target: 'dom0',
    summary: 'allow target=dom0',
    response: dom0Lines('dom0'),
    origin: '__main__:5',
  },
  {
    id: '17 other argument',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.Create.AppVM+debian-12',
    source: 'mgmtvm',
    target: 'dom0',
    summary: 'deny no matching rule found',
    response: 'result=deny',
  },
  {
    id: '18 @adminvm keyword as target',
    policy: ADMIN_POLICY,
    info: A,
    call: 'admin.vm.List',
    source: 'mgmtvm',
    target: '@adminvm',
    summary: 'allow target=dom0',
    response: dom0Lines('@adminvm'),
  },
  {
    id: '20 unknown target becomes @default',
    policy: '* * test-vm1 @default allow target=test-vm2\n* * @anyvm @anyvm deny',
    info: T,
    call: 'test.Service+argument',
    source: 'test-vm1',
    target: 'no-such-vm',
    summary: 'allow target=test-vm2',
    response: allowLines('test-vm2', '@default', `uuid:${UUID(T, 'test-vm2')}`),
  },
  {
    id: 'C1 legacy file through !compat-4.0',
    policy: '!compat-4.0',
    legacy: { 'test.Legacy': '$anyvm $tag:tag3 allow,user=root' },
    info: T,
    call: 'test.Legacy',
    source: 'test-vm1',
    target: 'test-vm3',
    summary: 'allow target=test-vm3',
    response: allowLines('test-vm3', 'test-vm3', `uuid:${UUID(T, 'test-vm3')}`, 'root'),
    origin: '/legacy/test.Legacy:1',
  },
  {
    id: 'C2 implicit deny after a +arg legacy file',
    policy: '!compat-4.0\ntest.Legacy * @anyvm @anyvm allow',
    legacy: { 'test.Legacy+arg': 'test-vm2 test-vm3 allow' },
    info: T,
    call: 'test.Legacy+arg',
    source: 'test-vm1',
    target: 'test-vm3',
    summary: 'deny denied by policy /legacy/test.Legacy+arg:-',
    response: 'result=deny',
  },
];

function run(v: Vector): Outcome {
  const policy = parsePolicyText(v.policy, { legacy: v.legacy });
  return decide(policy, { source: v.source, target: v.target, call: v.call }, v.info);
}

describe('reference §2 vectors', () => {
  it.each(VECTORS)('$id', (v) => {
    const outcome = run(v);
    expect(summaryLine(outcome)).toBe(v.summary);
    if (v.response !== undefined) expect(outcome.response).toBe(v.response);
    if (v.notify !== undefined) {
      expect(outcome.decision.result).toBe('deny');
      if (outcome.decision.result === 'deny') expect(outcome.decision.notify).toBe(v.notify);
    }
    if (v.origin !== undefined) {
      const o = outcome.decision.origin;
      expect(o && `${o.file}:${o.line ?? '-'}`).toBe(v.origin);
    }
  });

  it('9 offers exactly the targets left after the later deny', () => {
    const vector = VECTORS.find((v) => v.id.startsWith('9 '));
    if (!vector) throw new Error('vector 9 missing');
    const outcome = run(vector);
    expect(outcome.decision).toMatchObject({
      result: 'ask',
      targets: ['test-vm3'],
      defaultTarget: 'test-vm3',
    });
  });

  it('19 a policy that does not parse denies every call', () => {
    expect(() => parsePolicyText('* * @anyvm @default allow')).toThrow(
      new PolicySyntaxError(
        { file: '__main__', line: 1 },
        'allow action for @default rule must specify target= option',
      ),
    );
    let state: PolicyState;
    try {
      state = { policy: parsePolicyText('* * @anyvm @default allow'), error: null };
    } catch (err) {
      state = { policy: null, error: err as PolicySyntaxError };
    }
    for (const [source, target] of [
      ['test-vm1', 'test-vm2'],
      ['test-vm1', ''],
      ['test-vm2', 'dom0'],
    ] as const) {
      const outcome = decide(state, { source, target, call: 'test.Service+argument' }, T);
      expect(summaryLine(outcome)).toBe(
        'deny __main__:1: allow action for @default rule must specify target= option',
      );
      expect(outcome.response).toBe('result=deny');
    }
  });
});
