/**
 * Properties of the firewall rule parser on hostile input: what it accepts
 * prints as upstream's api_rule prints it and survives firewall.xml and the
 * API unchanged; what it refuses is a QubesValueError whose message a client
 * can carry; nothing accepted puts a line break, NUL or extra option into
 * firewall.xml or the netvm's QubesDB.
 */
import { readFile, rm } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { firewallQdbEntries } from '../../src/lifecycle/qubesdb-entries.js';
import { QubesValueError } from '../../src/model/errors.js';
import type { FirewallRule } from '../../src/model/firewall.js';
import { formatApiRule, isExpired, maxExpire, parseApiRule } from '../../src/model/firewall.js';
import { parseFirewall, serializeFirewall } from '../../src/persist/firewall-xml.js';
import { startDaemon } from '../support/harness.js';

/** A valid rule as a client may spell it, and the line upstream's api_rule prints for it. */
interface Spelled {
  readonly line: string;
  readonly expected: string;
}

const zeros = fc.integer({ min: 0, max: 2 }).map((n) => '0'.repeat(n));
const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const hostname = fc.stringMatching(/^[a-z0-9._-]{1,20}$/).filter((name) => !isIPv4(name) && !isIPv6(name));

/** [input value, printed option]: an address keeps the prefix as written, a bare one gets the full length. */
const host: fc.Arbitrary<[string, string]> = fc.oneof(
  fc
    .tuple(ipv4, fc.option(fc.tuple(zeros, fc.integer({ min: 0, max: 32 }))))
    .map(([ip, p]): [string, string] => {
      const value = p ? `${ip}/${p[0]}${p[1]}` : ip;
      return [value, `dst4=${p ? value : `${ip}/32`}`];
    }),
  fc
    .tuple(fc.ipV6(), fc.option(fc.tuple(zeros, fc.integer({ min: 0, max: 128 }))))
    .map(([ip, p]): [string, string] => {
      const value = p ? `${ip}/${p[0]}${p[1]}` : ip;
      return [value, `dst6=${p ? value : `${ip}/128`}`];
    }),
  hostname.map((name): [string, string] => [name, `dsthost=${name}`]),
);

const portSpelling = ([a, b]: [number, number]): fc.Arbitrary<string> =>
  a === b
    ? fc.constantFrom(`${a}`, `${a}-${a}`, `0${a}`)
    : fc.constantFrom(`${a}-${b}`, `0${a}-${b}`, `${a}-00${b}`);

const ports = fc
  .tuple(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }))
  .map(([a, b]): [number, number] => [Math.min(a, b), Math.max(a, b)]);

/** Options by their place in api_rule: action, expire, dst*, proto, specialtarget, dstports, icmptype. */
const protoPart: fc.Arbitrary<{ options: [number, string, string][] }> = fc.oneof(
  fc.constant({ options: [] as [number, string, string][] }),
  fc
    .tuple(
      fc.constantFrom('tcp', 'udp'),
      fc.option(ports.chain((r) => portSpelling(r).map((s) => [r, s] as const))),
    )
    .map(([proto, p]) => ({
      options: [
        [3, `proto=${proto}`, `proto=${proto}`] as [number, string, string],
        ...(p ? [[5, `dstports=${p[1]}`, `dstports=${p[0][0]}-${p[0][1]}`] as [number, string, string]] : []),
      ],
    })),
  fc.option(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 }))).map((t) => ({
    options: [
      [3, 'proto=icmp', 'proto=icmp'] as [number, string, string],
      ...(t
        ? [
            [
              6,
              `icmptype=${String(t[0]).padStart(Math.min(3, String(t[0]).length + t[1]), '0')}`,
              `icmptype=${t[0]}`,
            ] as [number, string, string],
          ]
        : []),
    ],
  })),
);

const commentText = fc.stringMatching(/^[A-Za-z0-9:;,./_[\] -]{0,30}$/);

const spelledRule: fc.Arbitrary<Spelled> = fc
  .record({
    action: fc.constantFrom('accept', 'drop'),
    expire: fc.option(fc.integer({ min: 0, max: maxExpire() })),
    host: fc.option(fc.tuple(host, fc.constantFrom('dsthost', 'dst4', 'dst6', 'dstname'))),
    proto: protoPart,
    special: fc.boolean(),
    comment: fc.option(commentText),
    lead: fc.constantFrom('', ' ', '  '),
  })
  .chain((r) => {
    const options: [number, string, string][] = [[0, `action=${r.action}`, `action=${r.action}`]];
    if (r.expire !== null) options.push([1, `expire=${r.expire}`, `expire=${r.expire}`]);
    if (r.host) options.push([2, `${r.host[1]}=${r.host[0][0]}`, r.host[0][1]]);
    options.push(...r.proto.options);
    if (r.special) options.push([4, 'specialtarget=dns', 'specialtarget=dns']);
    return fc.shuffledSubarray(options, { minLength: options.length }).map((shuffled) => {
      const printed = [...options].sort((a, b) => a[0] - b[0]).map((o) => o[2]);
      // Upstream keeps no empty comment (`if untrusted_comment:`).
      if (r.comment) printed.push(`comment=${r.comment}`);
      const input = r.lead + shuffled.map((o) => o[1]).join(' ');
      return {
        line: r.comment === null ? input : `${input} comment=${r.comment}`,
        expected: printed.join(' '),
      };
    });
  });

/** Characters a hostile client may put anywhere; ASCII, as the API delivers only that. */
const hostileChar = fc.oneof(
  fc.constantFrom('\0', '%', '=', ' ', '\t', '/', '-', ':', '<', '&', '"', "'", '\x7f', '\x01', 'A', '9'),
  fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)),
);

/** A valid line damaged: characters inserted, a piece cut out or repeated. */
const mutatedLine: fc.Arbitrary<string> = fc
  .tuple(
    spelledRule,
    fc.array(
      fc.oneof(
        fc.tuple(
          fc.constant('insert' as const),
          fc.nat(),
          fc.string({ unit: hostileChar, minLength: 1, maxLength: 4 }),
        ),
        fc.tuple(fc.constant('cut' as const), fc.nat(), fc.nat({ max: 8 })),
        fc.tuple(fc.constant('repeat' as const), fc.nat(), fc.nat({ max: 16 })),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([{ line }, edits]) =>
    edits.reduce((s, [kind, at, arg]) => {
      const i = at % (s.length + 1);
      if (kind === 'insert') return s.slice(0, i) + arg + s.slice(i);
      if (kind === 'cut') return s.slice(0, i) + s.slice(i + arg);
      return s.slice(0, i) + s.slice(i, i + arg) + s.slice(i);
    }, line),
  );

const hostileLine = fc.oneof(
  mutatedLine,
  fc.string({ unit: hostileChar, maxLength: 40 }),
  fc
    .array(
      fc.oneof(
        spelledRule.map((s) => s.line),
        fc.string({ unit: hostileChar, maxLength: 8 }),
      ),
      {
        minLength: 1,
        maxLength: 3,
      },
    )
    .map((parts) => parts.join(' ')),
);

/** What an API line, firewall.xml text or QubesDB value may hold: no line break, NUL, markup or quote. */
const PRINTED = /^[A-Za-z0-9:;,./_[\]= -]*$/;

/** What a client can show: printable ASCII and no `%`, as the upstream client formats the message with `%`. */
const CARRIABLE = /^[\x20-\x24\x26-\x7e]*$/;

function outcome(line: string): FirewallRule | QubesValueError {
  try {
    return parseApiRule(line);
  } catch (e) {
    if (e instanceof QubesValueError) return e;
    throw e;
  }
}

/** Rule.rule, which QubesDB gets: api_rule without expire and comment. */
const qdbForm = (apiLine: string): string =>
  apiLine
    .replace(/ comment=.*$/, '')
    .split(' ')
    .filter((option) => !option.startsWith('expire='))
    .join(' ');

function checkAccepted(rule: FirewallRule): void {
  const line = formatApiRule(rule);
  expect(line).toMatch(PRINTED);
  expect(parseApiRule(line)).toEqual(rule);
  expect(formatApiRule(parseApiRule(line))).toBe(line);

  const xml = serializeFirewall([rule]);
  const live = isExpired(rule) ? [] : [rule];
  expect(parseFirewall(xml)).toEqual(live);
  expect(serializeFirewall(parseFirewall(xml))).toBe(xml);
  for (const [, value] of xml.matchAll(/<property name="[a-z]+">([^<]*)<\/property>/g))
    expect(value).toMatch(/^[A-Za-z0-9:;,./_[\] -]*$/);

  for (const family of [4, 6] as const) {
    for (const [key, value] of firewallQdbEntries([rule], family, 0)) {
      expect(key).toMatch(/^(policy|[0-9]{4})$/);
      if (key === 'policy') continue;
      expect(value).toBe(qdbForm(line));
      const keys = value.split(' ').map((option) => option.split('=')[0]);
      expect(new Set(keys).size).toBe(keys.length);
    }
  }
}

describe('firewall rule parser properties', () => {
  it('prints every valid spelling as upstream api_rule prints it, and reads that back to the same rule', () => {
    fc.assert(
      fc.property(spelledRule, ({ line, expected }) => {
        const rule = parseApiRule(line);
        expect(formatApiRule(rule)).toBe(expected);
        checkAccepted(rule);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses damaged lines with a QubesValueError a client can carry, and keeps what it accepts intact', () => {
    fc.assert(
      fc.property(hostileLine, (line) => {
        const result = outcome(line);
        if (result instanceof QubesValueError) {
          expect(result.message).toMatch(CARRIABLE);
          return;
        }
        checkAccepted(result);
      }),
      {
        numRuns: 2000,
        examples: [
          ['action=accept x\0y'],
          ['action=accept 100%s'],
          ['action=accept dst4=%s/24'],
          ['action=accept dsthost=a/b/%n\0'],
          ['action=accept dsthost=\0'],
        ],
      },
    );
  });

  it('refuses a version 1 netmask that is not a whole number instead of storing it in the address', () => {
    for (const netmask of ['abc', '24.5', '1e400', '', '0x18', '1e1']) {
      const xml = `<firewall policy="deny"><rule address="1.2.3.4" netmask="${netmask}"/></firewall>`;
      expect(() => parseFirewall(xml)).toThrow(QubesValueError);
    }
  });

  it('reads a version 1 netmask of 0 as the address alone, as upstream does, not as every address', () => {
    const hosts = (rule: string) =>
      parseFirewall(`<firewall policy="deny">${rule}</firewall>`).flatMap((r) =>
        r.dsthost ? [r.dsthost.value] : [],
      );
    expect(hosts('<rule address="1.2.3.4" netmask="0"/>')).toEqual(['1.2.3.4/32']);
    expect(hosts('<rule address="fd00::1" netmask="0"/>')).toEqual(['fd00::1/128']);
    expect(hosts('<rule address="10.1.0.0" netmask="16"/>')).toEqual(['10.1.0.0/16']);
  });

  it('reads version 1 rules into rules that firewall.xml version 2 and the API keep as they are', () => {
    const attribute = (name: string, values: string[]) =>
      fc.option(fc.constantFrom(...values)).map((v) => (v === null ? '' : ` ${name}="${v}"`));
    const v1Rule = fc
      .tuple(
        attribute('address', ['1.2.3.4', '10.0.0.0', 'fd00::', 'example.com', 'Bad.Host', '1.2.3.4/8']),
        attribute('netmask', ['0', '8', '32', '64', '129', '-1', 'x', '', '24.5']),
        attribute('proto', ['tcp', 'udp', 'any']),
        attribute('port', ['22', '1024']),
        attribute('toport', ['80', '1024']),
        attribute('expire', ['1', String(maxExpire())]),
      )
      .map((attrs) => `<rule${attrs.join('')}/>`);
    fc.assert(
      fc.property(fc.constantFrom('allow', 'deny'), fc.array(v1Rule, { maxLength: 3 }), (policy, rules) => {
        const xml = `<firewall policy="${policy}" dns="allow">${rules.join('')}</firewall>`;
        let loaded: FirewallRule[];
        try {
          loaded = parseFirewall(xml);
        } catch (e) {
          expect(e).toBeInstanceOf(QubesValueError);
          return;
        }
        for (const rule of loaded) checkAccepted(rule);
      }),
      { numRuns: 300 },
    );
  });
});

describe('admin.vm.firewall.Set with hostile payloads', () => {
  it('answers OK or exactly one QubesValueError, and a refusal leaves the rules and firewall.xml as they were', async () => {
    const t = await startDaemon();
    try {
      await t.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=red');
      const baseline =
        'action=accept dst4=10.0.0.0/8 proto=tcp dstports=22-22 comment=baseline\naction=drop\n';
      await t.ok('admin.vm.firewall.Set', 'work', '', baseline);
      const file = join(t.stateDir, 'appvms', 'work', 'firewall.xml');
      // Lines as Python's splitlines() ends them, so each generated line is one rule.
      const line = hostileLine.filter((l) => !/[\n\r\x0b\x0c\x1c-\x1e]/.test(l));
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.oneof(
              line,
              spelledRule.map((r) => r.line),
            ),
            { minLength: 1, maxLength: 4 },
          ),
          async (lines) => {
            const payload = lines.map((l) => `${l}\n`).join('');
            const results = lines.map(outcome);
            const refusal = results.find((r) => r instanceof QubesValueError);
            const fileBefore = await readFile(file);
            const getBefore = await t.ok('admin.vm.firewall.Get', 'work');
            const reply = await t.call('admin.vm.firewall.Set', 'work', '', payload);
            if (refusal) {
              expect(reply.toString('latin1')).toBe(`2\0QubesValueError\0\0${refusal.message}\0`);
              expect(refusal.message).toMatch(CARRIABLE);
              expect(await readFile(file)).toEqual(fileBefore);
              expect(await t.ok('admin.vm.firewall.Get', 'work')).toBe(getBefore);
              return;
            }
            expect(reply.toString('latin1')).toBe('0\0');
            const rules = results as FirewallRule[];
            expect(await readFile(file, 'utf8')).toBe(serializeFirewall(rules));
            expect(await t.ok('admin.vm.firewall.Get', 'work')).toBe(
              rules
                .filter((r) => !isExpired(r))
                .map((r) => `${formatApiRule(r)}\n`)
                .join(''),
            );
            // Put the baseline back so the next refusal has rules to keep.
            await t.ok('admin.vm.firewall.Set', 'work', '', baseline);
          },
        ),
        // A fixed seed for the daemon-level property, as the socket fuzzer's: the same calls on every run.
        {
          numRuns: 60,
          seed: 20261207,
          examples: [[['action=accept x\0y']], [['action=accept dst4=%s/24', 'action=drop']]],
        },
      );
    } finally {
      await t.stop();
      await rm(t.stateDir, { recursive: true, force: true });
    }
  }, 30_000);
});
