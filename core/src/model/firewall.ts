import { isIPv4, isIPv6 } from 'node:net';

import { QubesValueError } from './errors.js';
import { parsePythonInt } from './validate.js';

/**
 * Firewall rules in upstream's API syntax (qubes/firewall.py facts). Upstream
 * raises plain ValueError for bad rules, which its socket turns into an empty
 * reply; we answer QubesValueError with the reason instead, which the upstream
 * client also treats as a ValueError.
 */
export interface FirewallRule {
  readonly action: 'accept' | 'drop';
  readonly proto?: 'tcp' | 'udp' | 'icmp';
  readonly dsthost?: DstHost;
  /** [from, to], inclusive */
  readonly dstports?: readonly [number, number];
  readonly icmptype?: number;
  readonly specialtarget?: 'dns';
  /** Unix time, seconds */
  readonly expire?: number;
  /**
   * `expire` as written, which is what Get and firewall.xml print: upstream's Expire keeps
   * its text (`0080` stays `0080`). Present exactly when `expire` is.
   */
  readonly expireText?: string;
  readonly comment?: string;
}

export interface DstHost {
  readonly type: 'dst4' | 'dst6' | 'dsthost';
  /** As stored: `addr/prefix` for addresses, the name for hosts. */
  readonly value: string;
}

const OPTION_SAFE = /^[A-Za-z0-9:;,./\-_[\]]*$/;
const COMMENT_SAFE = /^[A-Za-z0-9:;,./\-_[\] ]*$/;

function bad(message: string): never {
  throw new QubesValueError(message);
}

function checkSafe(value: string): void {
  if (!OPTION_SAFE.test(value)) bad('strange characters in rule');
}

export function parseDstHost(untrusted: string, prefixlen?: number): DstHost {
  // Checked first because the messages below quote the value, and a client reading one
  // splits it at NUL and formats it with `%`.
  checkSafe(untrusted);
  // A version 1 file's netmask; anything but a whole number would end up in the value.
  if (prefixlen !== undefined && !Number.isInteger(prefixlen)) bad('bad prefix length');
  const slashes = untrusted.split('/').length - 1;
  if (slashes > 1) bad(`Too many /: ${untrusted}`);
  if (slashes === 0) {
    // A version 1 netmask of 0 means the family's default, as upstream reads it (`prefixlen or 32`):
    // an accept rule for one address must not widen to every address.
    if (isIPv6(untrusted)) {
      const p = prefixlen || 128;
      if (p < 0 || p > 128) bad('netmask for IPv6 must be between 0 and 128');
      return { type: 'dst6', value: `${untrusted}/${p}` };
    }
    if (isIPv4(untrusted)) {
      const p = prefixlen || 32;
      if (p < 0 || p > 32) bad('netmask for IPv4 must be between 0 and 32');
      return { type: 'dst4', value: `${untrusted}/${p}` };
    }
    if (!/^[a-z0-9._-]+$/.test(untrusted)) bad('Invalid hostname');
    return { type: 'dsthost', value: untrusted };
  }
  const [host = '', prefix = ''] = untrusted.split('/');
  // int() also refuses more digits than Python converts.
  const p = /^[0-9]+$/.test(prefix) ? parsePythonInt(prefix) : undefined;
  if (p === undefined) bad('bad prefix length');
  if (isIPv6(host)) {
    if (p > 128) bad('netmask for IPv6 must be <= 128');
    return { type: 'dst6', value: untrusted };
  }
  if (isIPv4(host)) {
    if (p > 32) bad('netmask for IPv4 must be <= 32');
    return { type: 'dst4', value: untrusted };
  }
  return bad(`Invalid IP address: ${host}`);
}

/**
 * Upstream's DstPorts reads each port with Python's int() (so `+80`, `1_000` and a tab are
 * taken) and keeps only the numbers; messages quoting the value check its characters first.
 */
export function parseDstPorts(untrusted: string): [number, number] {
  const parts = untrusted.split('-');
  if (parts.length > 2) {
    checkSafe(untrusted);
    bad(untrusted);
  }
  const nums = parts.map((p) => {
    const n = parsePythonInt(p);
    if (n === undefined) {
      checkSafe(p);
      bad(`invalid port: ${p}`);
    }
    return n;
  });
  const from = nums[0] ?? 0;
  const to = nums[1] ?? from;
  if (from < 0 || to < 0 || from >= 65536 || to >= 65536) bad('Ports out of range');
  if (from > to) bad('Invalid port range');
  return [Number(from), Number(to)];
}

function parseIcmpType(untrusted: string): number {
  if (untrusted.length > 3 || !/^[0-9]+$/.test(untrusted)) bad('bad ICMP type');
  const n = Number(untrusted);
  if (n > 255) bad('ICMP type out of range');
  return n;
}

/**
 * The last second upstream can represent: it turns `expire` into a Python
 * datetime in dom0's local time zone (fromtimestamp without one), whose years
 * end at 9999, and refuses anything later. So the bound is the end of 9999 in
 * that zone, not in UTC: east of Greenwich it comes sooner, west of it later.
 * Read on each call because Node follows a change of process.env.TZ.
 */
export function maxExpire(): number {
  return new Date(9999, 11, 31, 23, 59, 59).getTime() / 1000;
}

/** Upstream's Expire: ASCII digits, read with int() (which refuses more digits than Python converts). */
function parseExpire(untrusted: string): number {
  checkSafe(untrusted);
  const seconds = /^[0-9]+$/.test(untrusted) ? parsePythonInt(untrusted) : undefined;
  if (seconds === undefined) bad('bad expiration time');
  if (seconds > maxExpire()) bad('expiration time out of range');
  return Number(seconds);
}

type MutableRule = { -readonly [K in keyof FirewallRule]: FirewallRule[K] };
/** The options a rule is written with (expireText is how expire was written). */
type RuleOption = Exclude<keyof FirewallRule, 'expireText'>;

/** Builds a rule from option values and applies the cross-option checks. */
export function makeRule(options: Partial<Record<RuleOption, string>>, prefixlen?: number): FirewallRule {
  const rule: Partial<MutableRule> = {};
  for (const [key, value] of Object.entries(options) as [RuleOption, string][]) {
    switch (key) {
      case 'action':
        checkSafe(value);
        if (value !== 'accept' && value !== 'drop') bad(value);
        rule.action = value;
        break;
      case 'proto':
        checkSafe(value);
        if (value !== 'tcp' && value !== 'udp' && value !== 'icmp') bad(value);
        rule.proto = value;
        break;
      case 'dsthost':
        rule.dsthost = parseDstHost(value, prefixlen);
        break;
      case 'dstports':
        rule.dstports = parseDstPorts(value);
        break;
      case 'icmptype':
        rule.icmptype = parseIcmpType(value);
        break;
      case 'specialtarget':
        checkSafe(value);
        if (value !== 'dns') bad(value);
        rule.specialtarget = value;
        break;
      case 'expire':
        rule.expire = parseExpire(value);
        rule.expireText = value;
        break;
      case 'comment':
        if (!COMMENT_SAFE.test(value)) bad('strange characters comment');
        rule.comment = value;
        break;
    }
  }
  if (!rule.action) bad('action is required');
  if (rule.dstports && rule.proto !== 'tcp' && rule.proto !== 'udp') {
    bad("dstports valid only for 'tcp' and 'udp' protocols");
  }
  if (rule.icmptype !== undefined && rule.proto !== 'icmp') bad("icmptype valid only for 'icmp' protocol");
  return rule as FirewallRule;
}

const RULE_KEYS = new Set([
  'action',
  'proto',
  'dsthost',
  'dstports',
  'icmptype',
  'specialtarget',
  'expire',
  'comment',
]);

/** Rule.from_api_string: one line of `key=value` options; everything after `comment=` is the comment. */
export function parseApiRule(untrusted: string): FirewallRule {
  const at = untrusted.indexOf('comment=');
  const optionsPart = at === -1 ? untrusted : untrusted.slice(0, at);
  const comment = at === -1 ? '' : untrusted.slice(at + 'comment='.length);
  const options: Partial<Record<RuleOption, string>> = {};
  if (comment) options.comment = comment;
  for (const option of optionsPart.trim().split(' ')) {
    const eq = option.indexOf('=');
    if (eq === -1) {
      // The message quotes the option: only characters a client can carry (see parseDstHost).
      checkSafe(option);
      bad(`Invalid rule option: ${option}`);
    }
    let key = option.slice(0, eq);
    const value = option.slice(eq + 1);
    if (key === 'dst4' || key === 'dst6' || key === 'dstname') {
      if ('dsthost' in options) bad("Option 'dsthost' already set");
      key = 'dsthost';
    } else if (!RULE_KEYS.has(key)) {
      bad('Unknown firewall option');
    }
    if (key in options) bad(`Option '${key}' already set`);
    options[key as RuleOption] = value;
  }
  return makeRule(options);
}

/** The API form of a rule, options in upstream's order with the comment last. */
export function formatApiRule(rule: FirewallRule): string {
  const parts = [`action=${rule.action}`];
  if (rule.expireText !== undefined) parts.push(`expire=${rule.expireText}`);
  if (rule.dsthost) parts.push(`${rule.dsthost.type}=${rule.dsthost.value}`);
  if (rule.proto) parts.push(`proto=${rule.proto}`);
  if (rule.specialtarget) parts.push(`specialtarget=${rule.specialtarget}`);
  if (rule.dstports) parts.push(`dstports=${rule.dstports[0]}-${rule.dstports[1]}`);
  if (rule.icmptype !== undefined) parts.push(`icmptype=${rule.icmptype}`);
  if (rule.comment !== undefined) parts.push(`comment=${rule.comment}`);
  return parts.join(' ');
}

/** The properties of a rule as firewall.xml stores them (upstream's property names and str() values). */
export function ruleProperties(rule: FirewallRule): [string, string][] {
  const props: [string, string][] = [['action', rule.action]];
  if (rule.comment !== undefined) props.push(['comment', rule.comment]);
  if (rule.expireText !== undefined) props.push(['expire', rule.expireText]);
  if (rule.dsthost) props.push(['dsthost', rule.dsthost.value]);
  if (rule.proto) props.push(['proto', rule.proto]);
  if (rule.specialtarget) props.push(['specialtarget', rule.specialtarget]);
  if (rule.dstports) {
    const [a, b] = rule.dstports;
    props.push(['dstports', a === b ? String(a) : `${a}-${b}`]);
  }
  if (rule.icmptype !== undefined) props.push(['icmptype', String(rule.icmptype)]);
  return props;
}

export function isExpired(rule: FirewallRule, nowSeconds = Date.now() / 1000): boolean {
  return rule.expire !== undefined && rule.expire < nowSeconds;
}

export const DEFAULT_FIREWALL: readonly FirewallRule[] = [{ action: 'accept' }];

/**
 * A qube's rules, or why its firewall.xml could not be loaded: one union, so that a broken file
 * can never be taken for the defaults, which accept everything (Vm.firewall reads it).
 */
export type FirewallState = { readonly rules: readonly FirewallRule[] } | { readonly unloadable: string };
