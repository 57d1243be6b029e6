import { describe, expect, it } from 'vitest';
import {
  AccessDenied,
  allowResponse,
  answerAsk,
  createRequest,
  decide,
  parsePolicyText,
  RequestError,
  type AllowDecision,
  type AskDecision,
  type Policy,
  type PolicyDecision,
  type SystemInfo,
} from '../../src/policy/index.js';
import { T, UUID, allowLines } from './fixtures.js';

const req = (source: string, target: string, call = 'test.Service+argument', info: SystemInfo = T) =>
  createRequest({ source, target, call }, info);
const evaluate = (policy: Policy, source: string, target: string): PolicyDecision =>
  policy.evaluate(req(source, target));
const asAllow = (d: PolicyDecision): AllowDecision => {
  if (d.result !== 'allow')
    throw new Error(`expected allow, got ${JSON.stringify(d.result === 'deny' ? d.reason : d)}`);
  return d;
};
const asAsk = (d: PolicyDecision): AskDecision => {
  if (d.result !== 'ask') throw new Error(`expected ask, got ${d.result}`);
  return d;
};

describe('requests', () => {
  it('splits the call at the first +', () => {
    expect(req('test-vm1', 'dom0', 'admin.vm.Create.AppVM+fedora-25')).toMatchObject({
      service: 'admin.vm.Create.AppVM',
      argument: '+fedora-25',
    });
    expect(req('test-vm1', 'dom0', 'a.b+c+d')).toMatchObject({ service: 'a.b', argument: '+c+d' });
    expect(req('test-vm1', 'dom0', 'admin.vm.List')).toMatchObject({
      service: 'admin.vm.List',
      argument: '+',
    });
    expect(req('test-vm1', 'dom0', 'admin.vm.List+')).toMatchObject({ argument: '+' });
  });

  it.each([
    ['', '@default'],
    ['no-such-vm', '@default'],
    ['test-vm2', 'test-vm2'],
    ['@adminvm', '@adminvm'],
    ['@dispvm', '@dispvm'],
    ['@dispvm:default-dvm', '@dispvm:default-dvm'],
  ])('normalises target %j to %j', (target, normal) => {
    expect(req('test-vm1', target).target).toBe(normal);
  });

  it.each([
    '@type:AppVM',
    '@dispvm:test-invalid-dvm',
    '@dispvm:test-vm1',
    '@anyvm',
    '@tag:tag1',
    '@dispvm:@tag:tag1',
    '@invalid',
  ])('refuses target %j', (target) => {
    expect(() => req('test-vm1', target)).toThrow(AccessDenied);
  });

  it('checks relayed sources', () => {
    const relayed = (relay: string, remote: string) =>
      createRequest(
        { source: relay, target: 'test2-vm1', call: 'qubes.SomeService+arg', requestedSource: remote },
        T,
      );
    expect(relayed('test2-relayvm1', 'test2-remotevm1').source).toBe('test2-remotevm1');
    expect(() => relayed('test2-relayvm2', 'test2-remotevm1')).toThrow(
      new RequestError('test2-relayvm2 is not a relay for test2-remotevm1'),
    );
    expect(() => relayed('test2-relayvm1', 'test-vm3')).toThrow(
      'test-vm3: requested source is only authorized for RemoteVM',
    );
    expect(() => relayed('test-relayvm1', 'test-unexistent')).toThrow(
      "unknown requested source qube 'test-unexistent'",
    );
  });
});

describe('rule lookup and ask targets', () => {
  const policy = parsePolicyText(`\
            * * test-vm1 test-vm2 allow
            * * test-vm1 @anyvm ask
            * * test-vm2 @tag:tag1 deny
            * * test-vm2 @tag:tag2 allow
            * * test-vm2 @dispvm:@tag:tag3 allow
            * * test-vm2 @dispvm:@tag:tag2 allow
            * * test-vm2 @dispvm:default-dvm allow
            * * @type:AppVM @default allow target=test-vm3
            * * @tag:tag1 @type:AppVM allow`);

  it.each([
    ['test-vm1', 'test-vm2', 0],
    ['test-vm1', 'test-vm3', 1],
    ['test-vm2', 'test-vm2', 3],
    ['test-vm2', 'test-no-dvm', 2],
    ['test-vm1', '@default', 1],
    ['test-vm2', '@default', 7],
    ['test-no-dvm', 'test-vm3', 8],
    ['test-vm2', '@dispvm:test-vm3', 4],
    ['test-vm2', '@dispvm', 6],
    ['test-no-dvm', 'test-standalone', null],
    ['test-no-dvm', '@dispvm', null],
    ['test-standalone', '@default', null],
  ] as Array<[string, string, number | null]>)('%s -> %s matches rule %j', (source, target, index) => {
    const rule = policy.findMatchingRule(req(source, target));
    expect(rule === null ? null : policy.rules.indexOf(rule)).toBe(index);
  });

  const askPolicy = parsePolicyText(`\
            * * test-vm1 test-vm2 allow
            * * test-vm1 @anyvm ask
            * * test-vm2 @tag:tag1 deny
            * * test-vm2 @tag:tag2 allow
            * * test-no-dvm @type:AppVM deny
            * * @type:AppVM @default allow target=test-vm3
            * * @tag:tag1 @type:AppVM allow
            * * test-no-dvm @dispvm allow
            * * test-standalone @dispvm allow
            * * test-standalone @adminvm allow
            * * uuid:c9024a97-9b15-46cc-8341-38d75d5d421b bogus2 deny
            * * uuid:c798d6db-360f-473a-b902-1cc58ffd3ab0 uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33 ask
            * * test2-vm1 @dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9 ask`);

  it.each([
    [
      'test-vm1',
      [
        '@dispvm:default-dvm',
        '@dispvm:test-vm3',
        '@dispvm:test-vm4',
        'default-dvm',
        'test-invalid-dvm',
        'test-no-dvm',
        'test-relayvm1',
        'test-remotevm1',
        'test-standalone',
        'test-template',
        'test-vm2',
        'test-vm3',
        'test-vm4',
        'test2-relayvm1',
        'test2-relayvm2',
        'test2-remotevm1',
        'test2-remotevm2',
        'test2-vm1',
      ],
    ],
    ['test-vm2', ['test-vm3']],
    ['test-vm3', []],
    [
      'test-standalone',
      [
        '@dispvm:default-dvm',
        'default-dvm',
        'dom0',
        'test-invalid-dvm',
        'test-no-dvm',
        'test-relayvm1',
        'test-vm1',
        'test-vm2',
        'test-vm3',
        'test-vm4',
        'test2-relayvm1',
        'test2-relayvm2',
        'test2-vm1',
      ],
    ],
    ['test-no-dvm', []],
    ['test2-vm1', ['@dispvm:test-vm4', 'test-standalone', 'test-vm3']],
  ] as Array<[string, string[]]>)('targets offered to %s', (source, expected) => {
    expect(askPolicy.collectTargetsForAsk(req(source, '@default'))).toEqual(expected);
  });
});

describe('evaluation (upstream TC_40_evaluate)', () => {
  const main = parsePolicyText(`\
            * * test-vm1 test-vm2 allow
            * * test-vm1 @default allow target=test-vm2
            * * @tag:tag1 test-vm2 ask
            * * @tag:tag1 test-vm3 ask default_target=test-vm3
            * * @tag:tag2 @anyvm allow
            * * test-vm3 @anyvm deny`);
  const P = (text: string) => parsePolicyText(text);

  it('deny notifies unless notify=no', () => {
    expect(evaluate(P('* * @anyvm @anyvm deny'), 'test-vm1', 'test-vm2')).toMatchObject({
      result: 'deny',
      notify: true,
    });
    expect(evaluate(P('* * @anyvm @anyvm deny notify=no'), 'test-vm1', 'test-vm2')).toMatchObject({
      result: 'deny',
      notify: false,
    });
  });

  it('simple allow; @default without target= is denied', () => {
    const p = P('* * test-vm1 test-vm2 allow');
    expect(asAllow(evaluate(p, 'test-vm1', 'test-vm2')).target).toBe('test-vm2');
    expect(evaluate(p, 'test-vm2', '@default').result).toBe('deny');
  });

  it('@default with target=', () => {
    const d = asAllow(evaluate(main, 'test-vm1', '@default'));
    expect(d).toMatchObject({ target: 'test-vm2', origin: { file: '__main__', line: 2 } });
    expect(d.request.target).toBe('@default');
    expect(evaluate(main, 'test-standalone', '@default').result).toBe('deny');
  });

  it('autostart=no allows running targets only', () => {
    const p = P('* * test-vm1 test-vm2 allow autostart=no\n* * test-vm1 test-vm3 allow autostart=no');
    expect(asAllow(evaluate(p, 'test-vm1', 'test-vm2')).autostart).toBe(false);
    expect(evaluate(p, 'test-vm1', 'test-vm3').result).toBe('deny');
  });

  it('ask collects every allowed target', () => {
    const d = asAsk(evaluate(main, 'test-standalone', 'test-vm2'));
    expect(d.origin.line).toBe(3);
    expect(d.targets).toEqual([
      '@dispvm:default-dvm',
      '@dispvm:test-vm3',
      '@dispvm:test-vm4',
      'default-dvm',
      'test-invalid-dvm',
      'test-no-dvm',
      'test-relayvm1',
      'test-remotevm1',
      'test-template',
      'test-vm1',
      'test-vm2',
      'test-vm3',
      'test-vm4',
      'test2-relayvm1',
      'test2-relayvm2',
      'test2-remotevm1',
      'test2-remotevm2',
      'test2-vm1',
    ]);
  });

  it('ask from a uuid source keeps the default target', () => {
    const d = asAsk(evaluate(main, 'uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33', 'test-vm3'));
    expect(d).toMatchObject({ defaultTarget: 'test-vm3', origin: { line: 4 } });
    expect(d.targets).not.toContain('test-standalone');
    expect(d.targets).toHaveLength(18);
  });

  it('ask with nothing to offer is denied', () => {
    expect(evaluate(P('* * test-vm3 @default ask'), 'test-vm3', '@default')).toMatchObject({
      result: 'deny',
      reason: "policy define 'ask' action at __main__:1 but no target is available to choose from",
    });
  });

  it('ask with autostart=no offers running qubes only', () => {
    expect(
      asAsk(evaluate(P('* * test-vm1 @anyvm ask autostart=no'), 'test-vm1', 'test-vm2')).targets,
    ).toEqual([
      'test-relayvm1',
      'test-remotevm1',
      'test-vm2',
      'test2-relayvm1',
      'test2-relayvm2',
      'test2-remotevm1',
      'test2-remotevm2',
      'test2-vm1',
    ]);
  });

  it('drops a default_target that is not offered', () => {
    const d = asAsk(evaluate(P('* * test-vm3 test-vm2 ask default_target=test-vm1'), 'test-vm3', 'test-vm2'));
    expect(d).toMatchObject({ targets: ['test-vm2'], defaultTarget: null });
  });

  it.each([
    ['* * test-vm3 @dispvm allow', 'test-vm3', '@dispvm', '@dispvm:default-dvm'],
    ['* * @anyvm @dispvm allow', 'test-vm3', '@dispvm', '@dispvm:default-dvm'],
    ['* * @anyvm @anyvm allow target=@dispvm', 'test-vm3', 'test-vm1', '@dispvm:default-dvm'],
    ['* * test-vm3 @adminvm allow', 'test-vm3', 'dom0', 'dom0'],
    ['* * test-vm3 @adminvm allow', 'test-vm3', '@adminvm', 'dom0'],
    ['* * test-vm3 dom0 allow', 'test-vm3', 'dom0', 'dom0'],
    ['* * test-vm3 dom0 allow', 'test-vm3', '@adminvm', 'dom0'],
    ['* * @anyvm @anyvm allow target=test-vm2', 'test-vm3', 'test-vm1', 'test-vm2'],
    ['* * @anyvm @anyvm allow target=@dispvm:test-vm3', 'test-vm3', 'test-vm1', '@dispvm:test-vm3'],
    ['* * @anyvm @anyvm allow target=dom0', 'test-vm3', 'test-vm1', 'dom0'],
    ['* * @anyvm @anyvm allow target=@adminvm', 'test-vm3', 'test-vm1', 'dom0'],
    [
      '* * @anyvm @anyvm allow target=uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4',
      'test-vm3',
      'test-vm1',
      'uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4',
    ],
    [
      '* * @anyvm @anyvm allow target=uuid:00000000-0000-0000-0000-000000000000',
      'test-vm3',
      'test-vm1',
      'uuid:00000000-0000-0000-0000-000000000000',
    ],
    [
      '* * @anyvm @anyvm allow target=@dispvm:uuid:fa6d56e8-a89d-4106-aa62-22e172a43c8b',
      'test-vm3',
      'test-vm1',
      '@dispvm:uuid:fa6d56e8-a89d-4106-aa62-22e172a43c8b',
    ],
  ])('%s: %s -> %s is allowed to %s', (text, source, target, actual) => {
    expect(asAllow(evaluate(P(text), source, target)).target).toBe(actual);
  });

  it.each([
    ['* * test-no-dvm @dispvm allow', 'test-no-dvm', '@dispvm'],
    ['* * @anyvm @anyvm allow target=@dispvm', 'test-no-dvm', 'test-vm1'],
    ['* * test-vm3 @anyvm allow target=no-such-vm', 'test-vm3', '@default'],
  ])('%s: %s -> %s is denied', (text, source, target) => {
    expect(evaluate(P(text), source, target).result).toBe('deny');
  });

  it.each(['dom0', '@adminvm', 'uuid:00000000-0000-0000-0000-000000000000'])(
    'dom0 alias %s only matches dom0',
    (alias) => {
      expect(evaluate(P('* * test-vm3 test-vm2 allow'), 'test-vm3', alias).result).toBe('deny');
      expect(evaluate(P(`* * test-vm3 ${alias} allow`), 'test-vm3', 'test-vm2').result).toBe('deny');
    },
  );

  it.each([
    ['dom0', 'dom0'],
    ['dom0', '@adminvm'],
    ['@adminvm', 'dom0'],
    ['@adminvm', '@adminvm'],
  ])('ask %s default_target=%s offers dom0', (target, dflt) => {
    const d = asAsk(evaluate(P(`* * test-vm3 ${target} ask default_target=${dflt}`), 'test-vm3', 'dom0'));
    expect(d).toMatchObject({ targets: ['dom0'], defaultTarget: 'dom0' });
  });

  const aliases = ['dom0', '@adminvm', 'uuid:00000000-0000-0000-0000-000000000000'];
  it.each(aliases.flatMap((t) => aliases.map((d) => [t, d])))('ask target=%s default_target=%s', (t, d) => {
    const ask = asAsk(
      evaluate(P(`* * test-vm3 @default ask target=${t} default_target=${d}`), 'test-vm3', '@default'),
    );
    expect(ask).toMatchObject({ targets: ['dom0'], defaultTarget: 'dom0' });
    expect(ask.request.target).toBe('@default');
  });

  it('resolves default_target=@dispvm', () => {
    const d = asAsk(
      evaluate(
        P('* * @anyvm @anyvm ask default_target=@dispvm\n* * @anyvm @dispvm ask'),
        'test-vm3',
        'test-vm1',
      ),
    );
    expect(d).toMatchObject({ defaultTarget: '@dispvm:default-dvm', origin: { line: 1 } });
  });

  it('ask target=@dispvm offers the caller default disposable template', () => {
    const p = P('* * @anyvm @anyvm ask target=@dispvm default_target=@dispvm');
    expect(asAsk(evaluate(p, 'test-vm1', 'test-vm2'))).toMatchObject({
      targets: ['@dispvm:default-dvm'],
      defaultTarget: '@dispvm:default-dvm',
    });
    expect(evaluate(p, 'test-no-dvm', 'test-vm2').result).toBe('deny');
  });

  it('@dispvm:@tag matches disposables of tagged templates only', () => {
    const p = P('* * @anyvm @dispvm:@tag:tag3 allow\n* * @anyvm @anyvm deny');
    expect(asAllow(evaluate(p, 'test-vm1', '@dispvm:test-vm3')).target).toBe('@dispvm:test-vm3');
    expect(evaluate(p, 'test-vm1', '@dispvm:test-vm4').result).toBe('deny');
    expect(evaluate(p, 'test-vm1', '@dispvm')).toMatchObject({
      result: 'deny',
      reason: 'denied by policy __main__:2',
    });
  });

  it('services the policy does not name share the wildcard rules', () => {
    const p = P('svc.A * @anyvm @anyvm deny\n* * test-vm1 test-vm2 allow\nsvc.B * @anyvm @anyvm deny');
    expect(p.rulesFor('svc.A').map((r) => r.line)).toEqual([1, 2]);
    expect(p.rulesFor('svc.B').map((r) => r.line)).toEqual([2, 3]);
    expect(p.rulesFor('invented.1')).toBe(p.rulesFor('invented.2'));
    expect(p.rulesFor('invented.1').map((r) => r.line)).toEqual([2]);
  });

  it('answers to ask', () => {
    const ask = asAsk(evaluate(P('* * @anyvm @anyvm ask notify=yes'), 'test-vm1', 'test-vm2'));
    expect(answerAsk(ask, true, 'test-vm3')).toMatchObject({
      result: 'allow',
      target: 'test-vm3',
      notify: true,
    });
    expect(() => answerAsk(ask, true, 'test-vm1')).toThrow('target test-vm1 is not a valid choice');
    expect(() => answerAsk(ask, false, '')).toThrow(new AccessDenied('denied by the user __main__:1', true));
  });
});

describe('qrexec-daemon replies (upstream test_120–test_134)', () => {
  const reply = (
    text: string,
    source: string,
    target: string,
    call = 'test.Service+argument',
    requestedSource?: string,
  ) => decide(parsePolicyText(text), { source, target, call, requestedSource }, T).response;

  it('qube target', () => {
    expect(reply('* * @anyvm @anyvm allow', 'test-vm1', 'test-vm2')).toBe(
      allowLines('test-vm2', 'test-vm2', 'uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4'),
    );
  });

  it('dom0, by name and by keyword', () => {
    expect(reply('* * @anyvm dom0 allow', 'test-vm1', 'dom0')).toBe(
      'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=dom0',
    );
    expect(reply('* * @anyvm dom0 allow', 'test-vm1', '@adminvm')).toBe(
      'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=@adminvm',
    );
  });

  it('disposable', () => {
    expect(reply('* * @anyvm @dispvm:default-dvm allow', 'test-vm1', '@dispvm:default-dvm')).toBe(
      allowLines(
        '@dispvm:default-dvm',
        '@dispvm:default-dvm',
        '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21',
      ),
    );
  });

  it('user= and autostart=no', () => {
    expect(reply('* * @anyvm @anyvm allow user=root autostart=no', 'test-vm1', 'test-vm2')).toBe(
      'user=root\nresult=allow\ntarget=test-vm2\ntarget_uuid=uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4\nautostart=False\nrequested_target=test-vm2',
    );
  });

  it('RemoteVM targets go through the relay and ignore user=', () => {
    const expected = [
      'user=DEFAULT',
      'result=allow',
      'target=test-relayvm1',
      `target_uuid=uuid:${UUID(T, 'test-relayvm1')}`,
      'autostart=True',
      'requested_target=test-remotevm1',
      'service=qubesair.SSHProxy+test-remotevm1+test.Service+argument',
    ].join('\n');
    expect(reply('* * test-vm1 test-remotevm1 allow', 'test-vm1', 'test-remotevm1')).toBe(expected);
    expect(reply('* * test-vm1 test-remotevm1 allow user=toto', 'test-vm1', 'test-remotevm1')).toBe(expected);
  });

  it('relayed source', () => {
    expect(
      reply(
        '* * test2-remotevm1 test2-vm1 allow',
        'test2-relayvm1',
        'test2-vm1',
        'qubes.SomeService+arg',
        'test2-remotevm1',
      ),
    ).toBe(
      `${allowLines('test2-vm1', 'test2-vm1', 'uuid:c798d6db-360f-473a-b902-1cc58ffd3ab0')}\npolicy_source=test2-remotevm1`,
    );
    expect(
      reply(
        '* * test2-remotevm1 test2-remotevm2 allow',
        'test2-relayvm1',
        'test2-remotevm2',
        'qubes.SomeService+arg',
        'test2-remotevm1',
      ),
    ).toBe(
      [
        'user=DEFAULT',
        'result=allow',
        'target=test2-relayvm2',
        'target_uuid=uuid:044767bb-081e-4260-b7be-35e77c36d510',
        'autostart=True',
        'requested_target=test2-remotevm2',
        'service=qubesair.SSHProxy+test2-remotevm2+qubes.SomeService+arg',
        'policy_source=test2-remotevm1',
      ].join('\n'),
    );
    expect(
      reply(
        '* * @anyvm @dispvm:default-dvm allow',
        'test-relayvm1',
        '@dispvm:default-dvm',
        'qubes.SomeService+arg',
        'test-remotevm1',
      ),
    ).toBe(
      `${allowLines('@dispvm:default-dvm', '@dispvm:default-dvm', '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21')}\npolicy_source=test-remotevm1`,
    );
  });

  it('RemoteVM without relay or transport is refused', () => {
    const broken = (drop: 'relayvm' | 'transport_rpc'): SystemInfo => {
      const remote = T.domains['test-remotevm1'];
      if (!remote) throw new Error('fixture lacks test-remotevm1');
      const { [drop]: _dropped, ...rest } = remote;
      return { domains: { ...T.domains, 'test-remotevm1': rest } };
    };
    const d = (info: SystemInfo) =>
      allowResponse(
        asAllow(
          parsePolicyText('* * test-vm1 test-remotevm1 allow').evaluate(
            req('test-vm1', 'test-remotevm1', undefined, info),
          ),
        ),
      );
    expect(() => d(broken('relayvm'))).toThrow('test-remotevm1: relayvm is not set');
    expect(() => d(broken('transport_rpc'))).toThrow('test-remotevm1: transport RPC is not set');
  });
});
