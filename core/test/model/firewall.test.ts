import { afterAll, beforeEach, describe, expect, it } from 'vitest';

import { QubesValueError } from '../../src/model/errors.js';
import { formatApiRule, parseApiRule } from '../../src/model/firewall.js';
import { parseFirewall, serializeFirewall } from '../../src/persist/firewall-xml.js';

// dom0's time zone bounds expire: these cases are in UTC unless they set another.
const hostZone = process.env.TZ;
beforeEach(() => {
  process.env.TZ = 'UTC';
});
afterAll(() => {
  if (hostZone === undefined) delete process.env.TZ;
  else process.env.TZ = hostZone;
});

describe('firewall rules', () => {
  it.each([
    [
      'action=accept dsthost=1.2.3.4 proto=tcp dstports=80',
      'action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80',
    ],
    [
      'action=drop proto=udp dstports=53-54 dsthost=example.com comment=hello',
      'action=drop dsthost=example.com proto=udp dstports=53-54 comment=hello',
    ],
    ['action=accept specialtarget=dns', 'action=accept specialtarget=dns'],
    ['action=accept proto=icmp icmptype=8', 'action=accept proto=icmp icmptype=8'],
    ['action=accept dst6=2001:db8::1', 'action=accept dst6=2001:db8::1/128'],
    ['action=accept dst4=10.0.0.0/8', 'action=accept dst4=10.0.0.0/8'],
    ['action=drop expire=1499450306 proto=udp', 'action=drop expire=1499450306 proto=udp'],
    ['action=drop proto=icmp comment=No ICMP', 'action=drop proto=icmp comment=No ICMP'],
    // 9999-12-31T23:59:59Z, the last second a Python datetime holds.
    ['action=drop expire=253402300799', 'action=drop expire=253402300799'],
    // Upstream's Expire keeps its text; DstPorts keeps the numbers int() read.
    ['action=drop expire=04102444800', 'action=drop expire=04102444800'],
    ['action=accept proto=tcp dstports=+80-+90', 'action=accept proto=tcp dstports=80-90'],
    ['action=accept proto=tcp dstports=1_000', 'action=accept proto=tcp dstports=1000-1000'],
    ['action=accept proto=tcp dstports=\t80', 'action=accept proto=tcp dstports=80-80'],
  ])('normalises %s', (input, output) => {
    expect(formatApiRule(parseApiRule(input))).toBe(output);
  });

  it.each([
    ['protoxyz=tcp action=accept', 'Unknown firewall option'],
    ['action=accept action=drop', "Option 'action' already set"],
    ['action=accept dstports=80', "dstports valid only for 'tcp' and 'udp' protocols"],
    ['action=accept proto=tcp icmptype=1', "icmptype valid only for 'icmp' protocol"],
    ['action=accept proto=tcp dstports=90-80', 'Invalid port range'],
    ['action=accept proto=tcp dstports=70000', 'Ports out of range'],
    ['action=accept dst4=1.2.3/24', 'Invalid IP address: 1.2.3'],
    ['action=accept dsthost=Example.com', 'Invalid hostname'],
    ['action=accept dst4=1.2.3.4/33', 'netmask for IPv4 must be <= 32'],
    ['action=accept dsthost=a dst4=1.2.3.4', "Option 'dsthost' already set"],
    ['proto=tcp', 'action is required'],
    ['action=accept comment=bad!', 'strange characters comment'],
    ['action=accept expire=253402300800', 'expiration time out of range'],
    ['action=accept expire=100000000000000000000000', 'expiration time out of range'],
    ['action=accept proto=tcp dstports=0x50', 'invalid port: 0x50'],
    ['action=accept proto=tcp dstports=8%0', 'strange characters in rule'],
  ])('refuses %s', (input, message) => {
    expect(() => parseApiRule(input)).toThrow(new QubesValueError(message));
  });

  it("refuses more digits than Python's int() converts (upstream fails there without a reply)", () => {
    expect(() => parseApiRule(`action=accept expire=${'0'.repeat(4291)}4102444800`)).toThrow(
      new QubesValueError('bad expiration time'),
    );
    expect(() => parseApiRule(`action=accept dst4=1.2.3.4/${'0'.repeat(4299)}24`)).toThrow(
      new QubesValueError('bad prefix length'),
    );
  });

  it('loads a rule stored with an expire beyond year 9999 as expiring at its end', () => {
    for (const stored of ['99999999999999999', '1e+21']) {
      const xml =
        '<firewall version="2"><rules><rule><properties><property name="action">accept</property>' +
        `<property name="expire">${stored}</property></properties></rule></rules></firewall>`;
      expect(parseFirewall(xml).map(formatApiRule)).toEqual(['action=accept expire=253402300799']);
    }
  });

  it('round-trips firewall.xml version 2 and drops expired rules', () => {
    const rules = [
      parseApiRule('action=accept dsthost=1.2.3.4 proto=tcp dstports=80'),
      parseApiRule('action=drop expire=1000 proto=udp'),
      parseApiRule('action=accept proto=icmp icmptype=8 comment=ping ok'),
    ];
    const xml = serializeFirewall(rules);
    expect(xml).toContain('<firewall version="2">');
    expect(xml).toContain('<property name="dstports">80</property>');
    expect(xml).not.toContain('expire');
    expect(parseFirewall(xml).map(formatApiRule)).toEqual([
      'action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80',
      'action=accept proto=icmp icmptype=8 comment=ping ok',
    ]);
  });

  it('stores expire as written and reads it back so', () => {
    const xml = serializeFirewall([parseApiRule('action=accept expire=004102444800')]);
    expect(xml).toContain('<property name="expire">004102444800</property>');
    expect(parseFirewall(xml).map(formatApiRule)).toEqual(['action=accept expire=004102444800']);
  });

  it.each([
    ['', 'not well-formed XML (line 1): Start tag expected.'],
    ['garbage', "not well-formed XML (line 1): char 'g' is not expected."],
    [
      '<firewall version="2"><rules></rules></firewall>junk<',
      'not well-formed XML (line 1): Extra text at the end',
    ],
    ['<firewall version="2"/><firewall version="2"/>', 'not one root element'],
    ['<html><body/></html>', 'version 1 needs policy allow or deny'],
  ])('refuses %j, which is no firewall file (upstream fails to load it too)', (xml, message) => {
    expect(() => parseFirewall(xml)).toThrow(message);
  });

  it('reads a Qubes 3 file under its own root element, <QubesFirewallRules>', () => {
    const xml =
      '<?xml version="1.0" encoding="utf-8"?>\n<QubesFirewallRules policy="allow" dns="allow" icmp="allow">\n' +
      '  <rule address="1.2.3.0" netmask="24" proto="tcp" port="443"/>\n</QubesFirewallRules>\n';
    expect(parseFirewall(xml).map(formatApiRule)).toEqual([
      'action=accept specialtarget=dns',
      'action=accept proto=icmp',
      'action=drop dst4=1.2.3.0/24 proto=tcp dstports=443-443',
      'action=accept',
    ]);
  });

  it('reads version 1 files as upstream translates them', () => {
    const xml =
      '<QubesFirewallRules policy="deny" dns="allow" icmp="deny">' +
      '<rule address="1.2.3.0" netmask="24" proto="tcp" port="443"/>' +
      '</QubesFirewallRules>';
    const v1 = xml.replaceAll('QubesFirewallRules', 'firewall');
    expect(parseFirewall(v1).map(formatApiRule)).toEqual([
      'action=accept specialtarget=dns',
      'action=drop proto=icmp',
      'action=accept dst4=1.2.3.0/24 proto=tcp dstports=443-443',
    ]);
  });
});

describe("expire's bound in dom0's local time, as upstream's datetime.fromtimestamp", () => {
  // The last second of year 9999 in each zone, as CPython 3 on Linux takes it: one more
  // fails there with 'year 10000 is out of range'.
  it.each([
    ['UTC', 253402300799],
    ['Asia/Tokyo', 253402268399],
    ['Australia/Sydney', 253402261199],
    ['Pacific/Kiritimati', 253402250399],
    ['America/New_York', 253402318799],
    ['Etc/GMT+12', 253402343999],
  ])('takes expire up to the end of 9999 in %s and no later', (zone, last) => {
    process.env.TZ = zone;
    expect(formatApiRule(parseApiRule(`action=drop expire=${last}`))).toBe(`action=drop expire=${last}`);
    expect(() => parseApiRule(`action=drop expire=${last + 1}`)).toThrow(
      new QubesValueError('expiration time out of range'),
    );
  });

  it("loads a stored expire beyond that as the end of 9999 in dom0's zone", () => {
    process.env.TZ = 'Asia/Tokyo';
    const xml =
      '<firewall version="2"><rules><rule><properties><property name="action">accept</property>' +
      '<property name="expire">253402300799</property></properties></rule></rules></firewall>';
    expect(parseFirewall(xml).map(formatApiRule)).toEqual(['action=accept expire=253402268399']);
  });
});
