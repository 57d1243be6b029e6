import { describe, expect, it } from 'vitest';
import {
  formatRule,
  parseRuleLine,
  parseServiceRuleLine,
  PolicySyntaxError,
  type Rule,
} from '../../src/policy/index.js';

const at = { file: 'filename', line: 12 };
const line = (text: string): Rule => parseRuleLine(text, at);
const svcLine = (text: string): Rule => parseServiceRuleLine('test.Service', '+argument', text, at);

describe('current-format lines', () => {
  it('parses the five columns and defaults', () => {
    const rule = line('test.Service +argument @anyvm @anyvm ask');
    expect(rule).toMatchObject({
      service: 'test.Service',
      argument: '+argument',
      file: 'filename',
      line: 12,
    });
    expect(rule.source.text).toBe('@anyvm');
    expect(rule.target.text).toBe('@anyvm');
    expect(rule.action).toEqual({
      type: 'ask',
      target: null,
      defaultTarget: null,
      user: null,
      notify: false,
      autostart: true,
    });
  });

  it('maps * to null for service and argument', () => {
    expect(line('* * @anyvm @anyvm deny')).toMatchObject({ service: null, argument: null });
    expect(line('svc + @anyvm @anyvm deny')).toMatchObject({ service: 'svc', argument: '+' });
  });

  it('reads parameters', () => {
    const ask = line('test.Service +argument @tag:tag1 @type:AppVM ask target=test-vm2 user=user').action;
    expect(ask).toMatchObject({ type: 'ask', user: 'user', defaultTarget: null });
    expect(ask.type === 'ask' && ask.target?.text).toBe('test-vm2');
    const allow = line('test.Service +argument @anyvm @default allow target=@dispvm:test-vm2').action;
    expect(allow.type === 'allow' && allow.target?.kind).toBe('dispvm-template');
    const dflt = line('test.Service +argument @anyvm @adminvm ask default_target=@adminvm').action;
    expect(dflt.type === 'ask' && dflt.defaultTarget?.text).toBe('@adminvm');
  });

  it.each([
    ['deny', true],
    ['ask', false],
    ['allow', false],
  ] as const)('notify defaults for %s, and notify=yes/no', (action, dflt) => {
    expect(line(`test.Service +argument @anyvm @adminvm ${action}`).action.notify).toBe(dflt);
    expect(line(`test.Service +argument @anyvm @adminvm ${action} notify=yes`).action.notify).toBe(true);
    expect(line(`test.Service +argument @anyvm @adminvm ${action} notify=no`).action.notify).toBe(false);
  });

  it.each(['ask', 'allow'])('autostart for %s', (action) => {
    const auto = (suffix: string) => {
      const a = line(`test.Service +argument @anyvm @anyvm ${action}${suffix}`).action;
      return a.type === 'deny' ? undefined : a.autostart;
    };
    expect(auto('')).toBe(true);
    expect(auto(' autostart=yes')).toBe(true);
    expect(auto(' autostart=no')).toBe(false);
  });

  // Upstream's TC_10_Rule.test_030_line_invalid.
  it.each([
    'test.Service +argument @dispvm @default allow',
    'test.Service +argument @default @default allow',
    'test.Service +argument @anyvm @default allow,target=@dispvm:@tag:tag1',
    'test.Service +argument @anyvm @default allow,target=@tag:tag1',
    'test.Service +argument @anyvm @default allow target=@tag:tag1',
    'test.Service +argument @anyvm @default allow target=@dispvm:@tag:tag1',
    'test.Service +argument @anyvm @default deny,target=test-vm1',
    'test.Service +argument @anyvm @default deny target=test-vm1',
    'test.Service +argument @anyvm @anyvm deny target=',
    'test.Service +argument @anyvm @anyvm deny,default_target=test-vm1',
    'test.Service +argument @anyvm @anyvm deny user=user',
    'test.Service +argument @anyvm @anyvm deny autostart=no',
    'test.Service +argument @anyvm @anyvm invalid',
    'test.Service +argument @anyvm @anyvm allow,invalid=xx',
    'test.Service +argument @anyvm @anyvm allow invalid=xx',
    'test.Service +argument @anyvm @anyvm',
    'test.Service +argument @anyvm @anyvm allow,default_target=test-vm1',
    'test.Service +argument @anyvm @anyvm allow default_target=',
    'test.Service +argument @anyvm @anyvm allow default_target=test-vm1',
    'test.Service +argument @invalid @anyvm allow',
    'test.Service +argument @anyvm @invalid deny',
    '',
    'test.Service +argument @anyvm @anyvm allow extra',
    'test.Service +argument @anyvm @default allow',
    'test.Service +argument @anyvm @anyvm allow notify',
    'test.Service +argument @anyvm @anyvm allow notify=xx',
    'test.Service +argument @anyvm @anyvm allow autostart=maybe',
    'test.Service +argument @anyvm @anyvm allow user=a user=b',
    'test.Service +argument @anyvm @anyvm allow target=',
    '* +argument @anyvm @default allow',
    '* +argument @anyvm @anyvm deny',
    'test+Service * @anyvm @anyvm deny',
    'test.Service argument @anyvm @anyvm deny',
    'test.Service +arg/x @anyvm @anyvm deny',
  ])('rejects %j', (text) => {
    expect(() => line(text)).toThrow(PolicySyntaxError);
  });

  it.each([
    ['test.Service +argument @anyvm @anyvm invalid', 'filename:12: invalid action: invalid'],
    ['test.Service +argument @anyvm @anyvm', 'filename:12: wrong number of fields'],
    [
      'test.Service +argument @anyvm @anyvm allow notify',
      "filename:12: invalid action parameter syntax: 'notify'",
    ],
    [
      'test.Service +argument @anyvm @anyvm allow notify=xx',
      "filename:12: 'notify' is 'xx', but can be only 'yes' or 'no'",
    ],
    [
      'test.Service +argument @anyvm @anyvm allow user=a user=b',
      "filename:12: parameter given twice: 'user'",
    ],
    [
      'test.Service +argument @anyvm @anyvm deny target=',
      'filename:12: invalid parameters for action deny: target=',
    ],
    [
      'test.Service +argument @anyvm @anyvm allow extra',
      "filename:12: invalid action parameter syntax: 'extra'",
    ],
    ['* +argument @anyvm @anyvm deny', 'filename:12: only * argument allowed for * service'],
    [
      'test.Service +argument @anyvm @default allow',
      'filename:12: allow action for @default rule must specify target= option',
    ],
    [
      'test.Service +argument @anyvm @anyvm allow,target=dom0',
      'filename:12: invalid action: allow,target=dom0',
    ],
  ])('explains %j', (text, message) => {
    expect(() => line(text)).toThrow(message);
  });

  it.each([
    'test.Service\t+argument\t@anyvm\t@anyvm\tallow',
    'test.Service\t+argument\t@anyvm\t@anyvm\task',
    'test.Service\t+argument\t@anyvm\t@anyvm\tdeny',
    'test.Service\t*\t@anyvm\t@anyvm\tdeny',
    'test.Service\t+argument\t@anyvm\t@dispvm:default-dvm\tallow',
    'test.Service\t+argument\t@tag:tag1\t@type:AppVM\task target=test-vm2 user=user',
    'test.Service\t+argument\t@anyvm\t@anyvm\tallow target=@adminvm',
  ])('formats back to %j', (text) => {
    expect(formatRule(line(text))).toBe(text);
  });
});

describe('per-service (old syntax) lines', () => {
  it('accepts commas between action and parameters', () => {
    const a = svcLine('@anyvm @default ask,default_target=test-vm1').action;
    expect(a.type === 'ask' && a.defaultTarget?.text).toBe('test-vm1');
    const b = svcLine('@tag:tag1 @type:AppVM ask target=test-vm2 user=user');
    expect(b.action).toMatchObject({ type: 'ask', user: 'user' });
    expect(svcLine('@anyvm @adminvm ask default_target=@adminvm')).toMatchObject({
      service: 'test.Service',
      argument: '+argument',
    });
  });

  // Upstream's TC_11_Rule_service.test_030_line_invalid.
  it.each([
    '@dispvm @default allow',
    '@default @default allow',
    '@anyvm @default allow,target=@dispvm:@tag:tag1',
    '@anyvm @default allow,target=@tag:tag1',
    '@anyvm @default deny,target=test-vm1',
    '@anyvm @anyvm deny,default_target=test-vm1',
    '@anyvm @anyvm deny,user=user',
    '@anyvm @anyvm invalid',
    '@anyvm @anyvm allow,invalid=xx',
    '@anyvm @anyvm',
    '@anyvm @anyvm allow,default_target=test-vm1',
    '@invalid @anyvm allow',
    '@anyvm @invalid deny',
    '',
    '@anyvm @anyvm allow extra',
    '@anyvm @default allow',
    '@anyvm @anyvm allow,notify',
    '@anyvm @anyvm allow,notify=xx',
  ])('rejects %j', (text) => {
    expect(() => svcLine(text)).toThrow(PolicySyntaxError);
  });
});
