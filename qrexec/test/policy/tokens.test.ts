import { describe, expect, it } from 'vitest';
import {
  AccessDenied,
  expandToken,
  indexSystemInfo,
  parseToken,
  PolicySyntaxError,
  tokenMatches,
  verifyIntended,
  type TokenContext,
} from '../../src/policy/index.js';
import { T } from './fixtures.js';

const domains = indexSystemInfo(T);
const U = (uuid: string) => `uuid:${uuid}`;
const DOM0 = U('00000000-0000-0000-0000-000000000000');

const LEGAL: Record<TokenContext, { ok: string[]; bad: string[] }> = {
  source: {
    ok: [
      'test-vm1',
      '@adminvm',
      'dom0',
      '@anyvm',
      '*',
      U('d8a249f1-b02b-4944-a9e5-437def2fbe2c'),
      '@type:AppVM',
      '@tag:tag1',
      '@dispvm:default-dvm',
      '@dispvm:@tag:tag3',
    ],
    bad: [
      '',
      '@default',
      '@uuid:',
      '@uuid:d8a249f1-b02b-4944-a9e5-437def2fbe2c',
      '@dispvm',
      '@invalid',
      '@dispvm:',
      '@dispvm:@tag:',
      '@tag:',
      '@type:',
    ],
  },
  target: {
    ok: [
      'test-vm1',
      '@adminvm',
      'dom0',
      '@anyvm',
      '*',
      '@default',
      '@type:AppVM',
      '@tag:tag1',
      '@dispvm',
      '@dispvm:default-dvm',
      '@dispvm:@tag:tag3',
      U('d8a249f1-b02b-4944-a9e5-437def2fbe2c'),
    ],
    bad: ['', '@invalid', '@dispvm:', '@dispvm:@tag:', '@tag:', '@type:'],
  },
  redirect: {
    ok: ['test-vm1', '@adminvm', 'dom0', '@dispvm', '@dispvm:default-dvm', DOM0],
    bad: [
      '',
      '@anyvm',
      '*',
      '@default',
      '@type:AppVM',
      '@tag:tag1',
      '@dispvm:@tag:tag3',
      '@invalid',
      '@dispvm:',
      '@tag:',
    ],
  },
  intended: {
    ok: [DOM0, 'test-vm1', '@adminvm', 'dom0', '@default', '@dispvm', '@dispvm:default-dvm'],
    bad: [
      '@anyvm',
      '*',
      '@type:AppVM',
      '@tag:tag1',
      '@dispvm:@tag:tag3',
      '',
      '@invalid',
      '@dispvm:',
      '@dispvm:@tag:',
      '@tag:',
      '@type:',
    ],
  },
};

describe('VM tokens by context', () => {
  for (const [context, { ok, bad }] of Object.entries(LEGAL) as [
    TokenContext,
    { ok: string[]; bad: string[] },
  ][]) {
    it.each(ok)(`${context} accepts %j`, (text) => {
      expect(parseToken(text, context).text).toBe(text);
    });
    it.each(bad)(`${context} rejects %j`, (text) => {
      expect(() => parseToken(text, context)).toThrow(PolicySyntaxError);
    });
  }

  it('classifies prefix tokens and keeps their value', () => {
    expect(parseToken('@dispvm:@tag:tag3', 'target')).toEqual({
      kind: 'dispvm-tag',
      text: '@dispvm:@tag:tag3',
      value: 'tag3',
    });
    expect(parseToken('@dispvm:default-dvm', 'target')).toEqual({
      kind: 'dispvm-template',
      text: '@dispvm:default-dvm',
      value: 'default-dvm',
    });
    expect(parseToken('@type:AppVM', 'source')).toEqual({
      kind: 'type',
      text: '@type:AppVM',
      value: 'AppVM',
    });
  });

  it('names the file and line of a bad token', () => {
    expect(() => parseToken('@tag:', 'source', { file: 'x.policy', line: 7 })).toThrow(
      "x.policy:7: invalid empty @tag: token: '@tag:'",
    );
    expect(() => parseToken('@anyvm', 'redirect', { file: 'x.policy', line: 3 })).toThrow(
      "x.policy:3: invalid redirect token: '@anyvm'",
    );
  });
});

// Upstream's TC_00_VMToken.test_100_match_single: policy token, requested target, expected.
const MATCHES: Array<[string, string, boolean]> = [
  [DOM0, '@adminvm', true],
  [DOM0, 'dom0', true],
  [DOM0, '@dispvm:default-dvm', false],
  [DOM0, 'test-vm1', false],
  ['@anyvm', 'test-vm1', true],
  ['@anyvm', '@default', true],
  ['@default', '@default', true],
  ['@tag:tag1', 'test-vm1', true],
  ['@type:AppVM', 'test-vm1', true],
  ['@type:TemplateVM', 'test-template', true],
  ['@anyvm', '@dispvm', true],
  ['@anyvm', '@dispvm:default-dvm', true],
  ['@dispvm', '@dispvm', true],
  ['@dispvm:@tag:tag3', '@dispvm:test-vm3', true],
  ['@adminvm', '@adminvm', true],
  ['@adminvm', 'dom0', true],
  ['dom0', '@adminvm', true],
  ['@adminvm', DOM0, true],
  ['dom0', 'dom0', true],
  ['test-vm3', 'dom0', false],
  ['dom0', 'test-vm3', false],
  ['test-vm3', '@adminvm', false],
  ['@adminvm', 'test-vm3', false],
  ['test-vm3', DOM0, false],
  [DOM0, 'test-vm3', false],
  ['@dispvm:default-dvm', '@dispvm:default-dvm', true],
  ['*', 'test-vm1', true],
  ['*', '@dispvm', true],
  ['*', '@adminvm', true],
  ['@default', 'no-such-vm', true],
  ['@default', 'test-vm1\n', true],
  ['@default', 'test-vm1  ', true],
  ['@default', 'test-vm1', false],
  ['@tag:tag1', 'test-vm3', false],
  ['@dispvm:@tag:tag1', '@dispvm:test-vm3', false],
  ['@dispvm:@tag:tag3', '@dispvm:default-dvm', false],
  ['@anyvm', 'dom0', false],
  ['@anyvm', '@adminvm', false],
  ['@tag:dom0-tag', '@adminvm', false],
  ['@type:AdminVM', '@adminvm', false],
  ['@tag:dom0-tag', 'dom0', true],
  ['@type:AdminVM', 'dom0', true],
  ['@tag:tag1', 'dom0', false],
  ['@dispvm', 'test-vm1', false],
  ['@dispvm', 'default-dvm', false],
  ['@dispvm:default-dvm', 'default-dvm', false],
  [U('6d7a02b5-532b-467f-b9fb-6596bae03c33'), 'test-standalone', true],
  [U('f3e538bd-4427-4697-bed7-45ef3270df21'), 'default-dvm', true],
  [
    '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21',
    '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21',
    true,
  ],
  ['@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21', '@dispvm:default-dvm', true],
  ['@dispvm:default-dvm', '@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21', true],
  ['test-standalone', U('6d7a02b5-532b-467f-b9fb-6596bae03c33'), true],
];

describe('token matching', () => {
  it.each(MATCHES)('%j matches %j: %j', (token, target, expected) => {
    const intended = verifyIntended(parseToken(target, 'intended'), domains);
    expect(tokenMatches(parseToken(token, 'target'), intended, { domains })).toBe(expected);
  });

  it('@dispvm:NAME and @dispvm:@tag:X match a bare @dispvm through the caller default_dispvm', () => {
    const dispvm = parseToken('@dispvm', 'intended');
    expect(
      tokenMatches(parseToken('@dispvm:default-dvm', 'target'), dispvm, { domains, source: 'test-vm1' }),
    ).toBe(true);
    expect(
      tokenMatches(parseToken('@dispvm:test-vm3', 'target'), dispvm, { domains, source: 'test-vm1' }),
    ).toBe(false);
    expect(
      tokenMatches(parseToken('@dispvm:default-dvm', 'target'), dispvm, { domains, source: 'test-no-dvm' }),
    ).toBe(false);
    expect(
      tokenMatches(parseToken('@dispvm:@tag:tag3', 'target'), dispvm, { domains, source: 'test-vm1' }),
    ).toBe(false);
  });

  it.each(['@dispvm:test-vm1', '@dispvm:test-invalid-dvm', '@dispvm:no-such'])(
    'refuses %j as intended target',
    (t) => {
      expect(() => verifyIntended(parseToken(t, 'intended'), domains)).toThrow(AccessDenied);
    },
  );
});

describe('token expansion (for ask)', () => {
  const expand = (t: string) => expandToken(parseToken(t, 'target'), domains).sort();
  const ALL_BUT_DOM0 = [
    '@dispvm',
    '@dispvm:default-dvm',
    '@dispvm:default-mgmt-dvm',
    '@dispvm:test-vm3',
    '@dispvm:test-vm4',
    'default-dvm',
    'default-mgmt-dvm',
    'internal-vm',
    'test-invalid-dvm',
    'test-no-dvm',
    'test-relayvm1',
    'test-remotevm1',
    'test-standalone',
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
  ];

  it.each([
    ['test-vm1', ['test-vm1']],
    ['@adminvm', ['@adminvm']],
    ['dom0', ['dom0']],
    [DOM0, ['dom0']],
    [U('b3eb69d0-f9d9-4c3c-ad5c-454500303ea4'), ['test-vm2']],
    ['@default', []],
    ['@type:TemplateVM', ['test-template']],
    ['@tag:tag1', ['test-invalid-dvm', 'test-no-dvm', 'test-standalone', 'test-template', 'test-vm1']],
    ['@dispvm:@tag:tag3', ['@dispvm:test-vm3']],
    ['@dispvm:uuid:fa6d56e8-a89d-4106-aa62-22e172a43c8b', ['@dispvm:test-vm3']],
    ['@anyvm', ALL_BUT_DOM0],
    ['*', [...ALL_BUT_DOM0, 'dom0'].sort()],
  ] as Array<[string, string[]]>)('%j', (token, expected) => {
    expect(expand(token)).toEqual(expected);
  });
});
