/**
 * The netvm's firewall from QubesDB entries to nft text: upstream's rule
 * semantics, rules that must block the client, and (where nft can be run
 * in a private network namespace) every rule set the parser accepts is a
 * ruleset nft accepts.
 */
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clientIpOfMac, macOfClientIp, resolvConfNameservers, vifName } from '../src/net/addressing.js';
import { parseClientRules, RuleParseError } from '../src/net/firewall-rules.js';
import { clientRules, renderRuleset, type NetvmState } from '../src/net/nft-ruleset.js';

const entries = (rules: Record<string, string>): Map<string, string> => new Map(Object.entries(rules));

/** nft's verdict on a ruleset, checked (-c) in a network namespace of its own; undefined when that cannot run here. */
function nftCheck(text: string): { ok: boolean; output: string } | undefined {
  const run = spawnSync('unshare', ['-n', 'nft', '-c', '-f', '-'], { input: text, encoding: 'utf8' });
  if (run.error || (run.status !== 0 && /unshare:|nft: not found|No such file/.test(run.stderr)))
    return undefined;
  return { ok: run.status === 0, output: run.stderr };
}
const nftUsable = nftCheck('table ip probe { }\n')?.ok === true;

const state = (firewalls: NetvmState['firewalls'], resolved = new Map<string, string[]>()): NetvmState => ({
  links: [{ ifname: vifName('10.137.0.5'), ip: '10.137.0.5' }],
  connectedIps: ['10.137.0.5'],
  firewalls,
  resolved,
  nameservers: ['10.0.2.3'],
  qubesDns: ['10.139.1.1', '10.139.1.2'],
  gateway: '10.137.0.1',
});

describe('client addressing', () => {
  it('reads the client address from fe:00 MACs only, and names its NIC vif<hex>', () => {
    expect(macOfClientIp('10.137.0.5')).toBe('fe:00:0a:89:00:05');
    expect(clientIpOfMac('FE:00:0a:89:00:05')).toBe('10.137.0.5');
    expect(clientIpOfMac('00:16:3e:5e:6c:00')).toBeUndefined();
    expect(vifName('10.137.0.5')).toBe('vif0a890005');
    fc.assert(
      fc.property(fc.ipV4(), (ip) => clientIpOfMac(macOfClientIp(ip)) === ip && vifName(ip).length <= 15),
    );
  });

  it("takes the IPv4 nameservers of a resolv.conf, as upstream's dnat-to-ns", () => {
    expect(
      resolvConfNameservers('# x\nnameserver 10.0.2.3\nnameserver ::1\n  nameserver\t1.1.1.1 \nsearch a\n'),
    ).toEqual(['10.0.2.3', '1.1.1.1']);
  });
});

describe('client rules', () => {
  it('renders each option as upstream, the policy last', () => {
    const rules = parseClientRules(
      entries({
        policy: 'drop',
        '0003': 'action=accept proto=icmp icmptype=8',
        '0000': 'action=accept dst4=10.0.2.2/32 proto=tcp dstports=8000-8000',
        '0001': 'action=accept specialtarget=dns',
        '0002': 'action=drop dsthost=example.org dstports=1-1024',
      }),
    );
    expect(clientRules(rules, new Map([['example.org', ['192.0.2.1', '192.0.2.1', '192.0.2.2']]]))).toEqual([
      'ip protocol tcp ip daddr 10.0.2.2/32 tcp dport 8000 accept',
      'ip daddr @dns-addr tcp dport 53 accept',
      'ip daddr @dns-addr udp dport 53 accept',
      'ip daddr { 192.0.2.1/32, 192.0.2.2/32 } tcp dport 1-1024 reject with icmp type admin-prohibited',
      'ip daddr { 192.0.2.1/32, 192.0.2.2/32 } udp dport 1-1024 reject with icmp type admin-prohibited',
      'ip protocol icmp icmp type 8 accept',
      'reject with icmp type admin-prohibited',
    ]);
  });

  it('skips a dns rule for other ports, and blocks the client when a name does not resolve', () => {
    const rules = parseClientRules(
      entries({
        policy: 'accept',
        '0000': 'action=accept specialtarget=dns dstports=80-80',
        '0001': 'action=accept dsthost=nowhere',
      }),
    );
    expect(clientRules(rules, new Map())).toEqual(['reject with icmp type admin-prohibited']);
    expect(clientRules(rules.slice(0, 1).concat(rules.slice(2)), new Map())).toEqual(['accept']);
  });

  it('refuses what upstream refuses, and anything that could reach nft unchecked', () => {
    for (const bad of [
      {},
      { policy: 'allow' },
      { policy: 'drop', x: 'action=accept' },
      { policy: 'drop', '0000': 'proto=tcp' },
      { policy: 'drop', '0000': 'action=accept dst6=::1/128' },
      { policy: 'drop', '0000': 'action=accept dst4=10.0.0.1/33' },
      { policy: 'drop', '0000': 'action=accept dsthost=a;b' },
      { policy: 'drop', '0000': 'action=accept proto=tcp dstports=2-1' },
      { policy: 'drop', '0000': 'action=accept proto=icmp dstports=1' },
      { policy: 'drop', '0000': 'action=accept icmptype=8' },
      { policy: 'drop', '0000': 'action=accept proto=icmp specialtarget=dns' },
      { policy: 'drop', '0000': 'action=accept comment=x' },
      { policy: 'drop', '0000': 'action=accept  proto=tcp' },
    ]) {
      expect(() => parseClientRules(entries(bad as Record<string, string>)), JSON.stringify(bad)).toThrow(
        RuleParseError,
      );
    }
  });

  it('leaves a client without rules out of the forward chain (dropped by its policy) and rejects one whose rules are bad', () => {
    const text = renderRuleset(state(new Map([['10.137.0.6', null]])));
    expect(text).not.toContain('jump qbs-10-137-0-5');
    expect(text).toMatch(/chain qbs-10-137-0-6 \{\n\s+reject with icmp type admin-prohibited\n\s+\}/);
    expect(text).toMatch(/type filter hook forward priority 0; policy drop;/);
  });
});

const digits4 = fc.integer({ min: 0, max: 9999 }).map((n) => String(n).padStart(4, '0'));
const ruleText = fc
  .record(
    {
      action: fc.constantFrom('accept', 'drop'),
      dst: fc.oneof(
        fc.constant(''),
        fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => `dst4=${a}/${p}`),
        fc.constantFrom('dsthost=example.org', 'dsthost=a.b-c_d'),
      ),
      proto: fc.constantFrom('', 'tcp', 'udp', 'icmp'),
      ports: fc.tuple(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 })),
      withPorts: fc.boolean(),
      icmptype: fc.option(fc.integer({ min: 0, max: 255 })),
      dns: fc.boolean(),
    },
    { requiredKeys: ['action', 'dst', 'proto', 'ports', 'withPorts', 'icmptype', 'dns'] },
  )
  .map((r) => {
    const parts = [`action=${r.action}`];
    if (r.dst && !r.dns) parts.push(r.dst);
    if (r.proto) parts.push(`proto=${r.proto}`);
    if (r.dns && r.proto !== 'icmp') parts.push('specialtarget=dns');
    if (r.withPorts && r.proto !== 'icmp')
      parts.push(`dstports=${Math.min(...r.ports)}-${Math.max(...r.ports)}`);
    if (r.proto === 'icmp' && r.icmptype !== null) parts.push(`icmptype=${r.icmptype}`);
    return parts.join(' ');
  });

describe.skipIf(!nftUsable)('rendered rulesets (nft -c in a private network namespace)', () => {
  it('rewrites a client with visible addresses to its real one on the way in, and back on the way out', () => {
    const real = '10.137.0.7';
    const text = renderRuleset({
      ...state(new Map()),
      links: [
        { ifname: vifName('10.137.0.5'), ip: '10.137.0.5' },
        { ifname: vifName(real), ip: real, visible: { ip: '10.138.1.2', gateway: '10.138.1.1' } },
      ],
    });
    const chain = (name: string): string =>
      new RegExp(`chain ${name} \\{\\n([^}]*)\\}`)
        .exec(text)?.[1]
        ?.trim()
        .replace(/\s*\n\s*/g, '\n') ?? '';
    expect(chain('mapped-in')).toBe(
      [
        'type filter hook prerouting priority raw - 10; policy accept;',
        'iifname "vif0a890007" ip saddr != 10.138.1.2 counter drop',
        'iifname "vif0a890007" ip saddr set 10.137.0.7',
      ].join('\n'),
    );
    expect(chain('mapped-out')).toBe(
      [
        'type filter hook postrouting priority srcnat + 200; policy accept;',
        'oifname "vif0a890007" ip daddr 10.137.0.7 ip daddr set 10.138.1.2',
        'oifname "vif0a890007" ip saddr 10.137.0.1 ip saddr set 10.138.1.1',
      ].join('\n'),
    );
    // Anti-spoofing sees the real address, as for any client.
    expect(text).toContain('"vif0a890007" . 10.137.0.7');
    expect(renderRuleset(state(new Map()))).not.toContain('mapped-');
    if (nftUsable) expect(nftCheck(text)).toEqual({ ok: true, output: '' });
  });

  it('every rule set the parser accepts, for several clients at once, is a ruleset nft accepts', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.ipV4(), { minLength: 1, maxLength: 4 }),
        fc.array(fc.dictionary(digits4, ruleText, { maxKeys: 8 }), { minLength: 4, maxLength: 4 }),
        fc.constantFrom('accept', 'drop'),
        (ips, ruleSets, policy) => {
          const firewalls = new Map(
            ips.map((ip, i) => [ip, parseClientRules(entries({ policy, ...ruleSets[i] }))]),
          );
          const text = renderRuleset({
            // Every other client shown other addresses (net.fake-ip): the mapped chains too.
            links: ips.map((ip, i) => ({
              ifname: vifName(ip),
              ip,
              ...(i % 2 === 1 && { visible: { ip: `10.138.0.${i}`, gateway: '10.138.255.1' } }),
            })),
            connectedIps: ips,
            firewalls,
            resolved: new Map([['example.org', ['192.0.2.1', '192.0.2.7']]]),
            nameservers: ['10.0.2.3'],
            qubesDns: ['10.139.1.1', '10.139.1.2'],
            gateway: '10.137.0.1',
          });
          const verdict = nftCheck(text);
          expect(verdict?.output ?? '').toBe('');
          expect(verdict?.ok).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });
});
if (!nftUsable) console.log('net-ruleset: nft -c is not run: needs nft and unshare -n (root) on this host');
