import { describe, expect, it } from 'vitest';

import { FirewallRule, FirewallRuleError } from '../src/index.js';
import { ruleFromArgs } from '../src/cli/commands/firewall.js';
import { UsageError } from '../src/cli/io.js';

describe('FirewallRule', () => {
  it('re-serialises captured server rules in the client order', () => {
    const cases: [string, string][] = [
      ['action=accept', 'action=accept'],
      [
        'action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80',
        'action=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80',
      ],
      [
        'action=drop dsthost=example.com proto=udp dstports=53-54 comment=hello there',
        'action=drop proto=udp dsthost=example.com dstports=53-54 comment=hello there',
      ],
      ['action=accept specialtarget=dns', 'action=accept specialtarget=dns'],
      ['action=accept proto=icmp icmptype=8', 'action=accept proto=icmp icmptype=8'],
      ['action=drop dst6=fd00::/8 expire=1499450306', 'action=drop dst6=fd00::/8 expire=1499450306'],
    ];
    for (const [input, output] of cases) expect(FirewallRule.parse(input).toString()).toBe(output);
  });

  it('normalises hosts and ports', () => {
    const rule = new FirewallRule({ action: 'accept', dsthost: '10.0.0.1', proto: 'tcp', dstports: '443' });
    expect(rule.toString()).toBe('action=accept proto=tcp dst4=10.0.0.1/32 dstports=443-443');
    expect(rule.dsthost).toBe('10.0.0.1/32');
    expect(rule.dstports).toBe('443');
    expect(new FirewallRule({ action: 'accept', dsthost: '::1' }).toString()).toBe(
      'action=accept dst6=::1/128',
    );
    // A /0 network restricts nothing, so it is dropped.
    expect(new FirewallRule({ action: 'drop', dsthost: '0.0.0.0/0' }).toString()).toBe('action=drop');
  });

  it('rejects invalid rules', () => {
    const bad: Record<string, string>[] = [
      { proto: 'tcp' },
      { action: 'maybe' },
      { action: 'accept', dstports: '80' },
      { action: 'accept', proto: 'icmp', dstports: '80' },
      { action: 'accept', proto: 'tcp', icmptype: '8' },
      { action: 'accept', proto: 'tcp', dstports: '90-80' },
      { action: 'accept', proto: 'tcp', dstports: '65536' },
      { action: 'accept', dsthost: 'Bad_Host!' },
      { action: 'accept', dsthost: '1.2.3.4/33' },
      { action: 'accept', protoxyz: 'tcp' },
    ];
    for (const fields of bad)
      expect(() => new FirewallRule(fields), JSON.stringify(fields)).toThrow(FirewallRuleError);
  });
});

describe("qvm firewall's rule arguments", () => {
  it('fills positional words in order: action, dsthost, proto, ports', () => {
    expect(ruleFromArgs(['accept', '1.2.3.4', 'tcp', '80']).toString()).toBe(
      'action=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80',
    );
    expect(ruleFromArgs(['drop', 'example.com', 'icmp', '8']).toString()).toBe(
      'action=drop proto=icmp dsthost=example.com icmptype=8',
    );
  });

  it('mixes keyword and positional forms', () => {
    expect(ruleFromArgs(['accept', 'dsthost=1.2.3.4', 'proto=tcp', 'dstports=80']).toString()).toBe(
      'action=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80',
    );
    expect(ruleFromArgs(['proto=udp', 'drop', '10.0.0.0/8', '53']).toString()).toBe(
      'action=drop proto=udp dst4=10.0.0.0/8 dstports=53-53',
    );
    expect(ruleFromArgs(['accept', 'comment=web server']).toString()).toBe(
      'action=accept comment=web server',
    );
  });

  it('turns expire=+N into an absolute time', () => {
    const before = Math.floor(Date.now() / 1000);
    const expire = ruleFromArgs(['drop', 'expire=+300']).expire ?? 0;
    const after = Math.ceil(Date.now() / 1000);
    expect(expire - before).toBeGreaterThanOrEqual(300);
    expect(expire - after).toBeLessThanOrEqual(300);
  });

  it('reports bad descriptions as usage errors', () => {
    for (const words of [['accept', 'proto='], ['accept', 'a=b=c'], ['accept', 'colour=red'], ['maybe']]) {
      expect(() => ruleFromArgs(words), words.join(' ')).toThrow(UsageError);
    }
  });
});
