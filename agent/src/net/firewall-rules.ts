import { isIPv4 } from 'node:net';

/**
 * One firewall rule as the netvm reads it from QubesDB
 * (/qubes-firewall/<ip>/NNNN, upstream's `key=value ...` form), checked
 * here so that nothing but these shapes ever reaches nft.
 */
export interface NetRule {
  readonly action: 'accept' | 'drop';
  readonly proto?: 'tcp' | 'udp' | 'icmp';
  /** IPv4 `addr/prefix` */
  readonly dst4?: string;
  readonly dsthost?: string;
  /** [from, to] */
  readonly dstports?: readonly [number, number];
  readonly icmptype?: number;
  readonly specialtarget?: 'dns';
}

/** Rules that cannot be read: upstream blocks the client's traffic then. */
export class RuleParseError extends Error {}

const HOSTNAME = /^[a-z0-9._-]+$/;

/**
 * Upstream's read_rules plus the per-option checks of prepare_rules for
 * IPv4: `policy` is required and becomes the last rule; every other key is
 * a four-digit rule number, taken in order. IPv6 destinations are an error
 * for an IPv4 client, as upstream's.
 */
export function parseClientRules(entries: ReadonlyMap<string, string>): NetRule[] {
  const policy = entries.get('policy');
  if (policy === undefined) throw new RuleParseError("No 'policy' defined");
  const rules: NetRule[] = [];
  for (const key of [...entries.keys()].sort()) {
    if (key === 'policy') continue;
    if (!/^[0-9]{4}$/.test(key)) throw new RuleParseError(`Unexpected non-rule found: ${key}`);
    rules.push(parseRule(entries.get(key) ?? ''));
  }
  rules.push({ action: parseAction(policy) });
  return rules;
}

function parseAction(value: string): 'accept' | 'drop' {
  if (value !== 'accept' && value !== 'drop') throw new RuleParseError(`Invalid rule action ${value}`);
  return value;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function parseRule(text: string): NetRule {
  const options = new Map<string, string>();
  for (const element of text.split(' ')) {
    const parts = element.split('=');
    if (parts.length !== 2) throw new RuleParseError(`Malformed rule option ${element}`);
    const [key = '', value = ''] = parts;
    options.set(key, value);
  }
  const action = options.get('action');
  if (action === undefined) throw new RuleParseError(`Rule '${text}' lacks action`);
  const rule: Mutable<NetRule> = { action: parseAction(action) };
  for (const [key, value] of options) {
    switch (key) {
      case 'action':
        break;
      case 'proto':
        if (value !== 'tcp' && value !== 'udp' && value !== 'icmp')
          throw new RuleParseError(`Invalid proto ${value}`);
        rule.proto = value;
        break;
      case 'dst4':
        rule.dst4 = parseDst4(value);
        break;
      case 'dst6':
        throw new RuleParseError('dst6 rule found for IPv4 address');
      case 'dsthost':
        if (!HOSTNAME.test(value)) throw new RuleParseError(`Invalid destination ${value}`);
        rule.dsthost = value;
        break;
      case 'dstports':
        rule.dstports = parsePorts(value);
        break;
      case 'icmptype':
        if (!/^[0-9]{1,3}$/.test(value) || Number(value) > 255)
          throw new RuleParseError(`Invalid icmptype ${value}`);
        rule.icmptype = Number(value);
        break;
      case 'specialtarget':
        if (value !== 'dns') throw new RuleParseError(`Invalid specialtarget ${value}`);
        rule.specialtarget = value;
        break;
      default:
        throw new RuleParseError(`Unsupported rule option(s): ${key}`);
    }
  }
  if ([rule.dst4, rule.dsthost].filter((v) => v !== undefined).length > 1) {
    throw new RuleParseError('More than one destination');
  }
  // Upstream's core refuses these combinations; checking again keeps them from ever reaching nft.
  if (rule.dstports && rule.proto === 'icmp') throw new RuleParseError('dstports with proto=icmp');
  if (rule.icmptype !== undefined && rule.proto !== 'icmp')
    throw new RuleParseError('icmptype without proto=icmp');
  // Port 53 with ICMP: upstream renders `icmp dport 53`, nft refuses it and the client ends up blocked; so does this.
  if (rule.specialtarget === 'dns' && rule.proto === 'icmp')
    throw new RuleParseError('specialtarget=dns with proto=icmp');
  return rule;
}

function parseDst4(value: string): string {
  const [addr = '', prefix, ...rest] = value.split('/');
  if (rest.length > 0 || !isIPv4(addr)) throw new RuleParseError(`Invalid dst4 ${value}`);
  if (prefix === undefined) return `${addr}/32`;
  if (!/^[0-9]{1,2}$/.test(prefix) || Number(prefix) > 32) throw new RuleParseError(`Invalid dst4 ${value}`);
  return `${addr}/${Number(prefix)}`;
}

function parsePorts(value: string): [number, number] {
  const parts = value.split('-');
  if (parts.length > 2 || parts.some((p) => !/^[0-9]{1,5}$/.test(p)))
    throw new RuleParseError(`Invalid dstports ${value}`);
  const from = Number(parts[0]);
  const to = Number(parts[1] ?? parts[0]);
  if (to > 65535 || from > to) throw new RuleParseError(`Invalid dstports ${value}`);
  return [from, to];
}
