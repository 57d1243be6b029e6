/** Which of a client's existing connections new rules end (upstream's is_blocked), from conntrack's listing. */
import { describe, expect, it } from 'vitest';
import { isBlocked, parseConntrackList } from '../src/net/conntrack.js';
import { parseClientRules } from '../src/net/firewall-rules.js';

const LISTING = `tcp      6 431999 ESTABLISHED src=10.137.0.5 dst=10.0.2.2 sport=40000 dport=8002 src=10.0.2.2 dst=10.0.2.15 sport=8002 dport=40000 [ASSURED] mark=0 use=1
udp      17 29 src=10.137.0.5 dst=10.0.2.3 sport=5353 dport=53 src=10.0.2.3 dst=10.0.2.15 sport=53 dport=5353 mark=0 use=1
icmp     1 29 src=10.137.0.5 dst=10.0.2.2 type=8 code=0 id=7 src=10.0.2.2 dst=10.0.2.15 type=0 code=0 id=7 mark=0 use=1
tcp      6 431999 ESTABLISHED src=10.137.0.5 dst=10.0.2.2 sport=40001 dport=8002 src=10.0.2.2 dst=10.0.2.15 sport=8002 dport=40001 [ASSURED] mark=0 use=1
`;

const rules = (entries: Record<string, string>) => parseClientRules(new Map(Object.entries(entries)));

describe('existing connections', () => {
  it('lists each original direction with a port once', () => {
    expect(parseConntrackList(LISTING)).toEqual([
      { proto: 'tcp', dst: '10.0.2.2', dport: 8002 },
      { proto: 'udp', dst: '10.0.2.3', dport: 53 },
    ]);
  });

  it('ends what the first matching rule drops, or what no rule accepts', () => {
    const tcp = { proto: 'tcp', dst: '10.0.2.2', dport: 8002 };
    const none = new Map<string, string[]>();
    expect(isBlocked(rules({ policy: 'accept' }), tcp, none, [])).toBe(false);
    expect(isBlocked(rules({ policy: 'drop' }), tcp, none, [])).toBe(true);
    expect(isBlocked(null, tcp, none, [])).toBe(true);
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept dst4=10.0.0.0/16' }), tcp, none, []),
    ).toBe(false);
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept dst4=10.1.0.0/16' }), tcp, none, []),
    ).toBe(true);
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept dstports=8000-8010' }), tcp, none, []),
    ).toBe(false);
    // Numbers, not text: upstream's string comparison would call 8002 outside 800-10000.
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept dstports=800-10000' }), tcp, none, []),
    ).toBe(false);
    expect(isBlocked(rules({ policy: 'drop', '0000': 'action=accept proto=udp' }), tcp, none, [])).toBe(true);
    expect(
      isBlocked(
        rules({ policy: 'drop', '0000': 'action=accept dsthost=h' }),
        tcp,
        new Map([['h', ['10.0.2.2']]]),
        [],
      ),
    ).toBe(false);
    expect(isBlocked(rules({ policy: 'accept', '0000': 'action=drop dst4=0.0.0.0/0' }), tcp, none, [])).toBe(
      true,
    );
    const dns = { proto: 'udp', dst: '10.0.2.3', dport: 53 };
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept specialtarget=dns' }), dns, none, [
        '10.0.2.3',
      ]),
    ).toBe(false);
    expect(
      isBlocked(rules({ policy: 'drop', '0000': 'action=accept specialtarget=dns' }), dns, none, [
        '10.0.2.9',
      ]),
    ).toBe(true);
  });
});
