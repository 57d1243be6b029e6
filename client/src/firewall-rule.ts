import { isIPv4, isIPv6 } from 'node:net';

/** Keys a rule may have; `dst4`/`dst6` are read as `dsthost` (the kind is re-derived from the value). */
const KEYS: ReadonlySet<string> = new Set([
  'action',
  'proto',
  'dsthost',
  'dst4',
  'dst6',
  'dstports',
  'icmptype',
  'specialtarget',
  'expire',
  'comment',
]);

export class FirewallRuleError extends Error {}

interface Host {
  kind: 'dst4' | 'dst6' | 'dsthost';
  text: string;
  prefix: number;
}

interface PortRange {
  from: number;
  to: number;
}

/**
 * One firewall rule, validated and normalised on this side the way upstream's client does it, so that
 * read-modify-write of a rule list re-serialises every rule canonically (`dst4=1.2.3.4/32`,
 * `dstports=80-80`) before sending it back.
 */
export class FirewallRule {
  readonly action: 'accept' | 'drop';
  readonly proto?: 'tcp' | 'udp' | 'icmp';
  readonly specialtarget?: 'dns';
  readonly icmptype?: number;
  readonly expire?: number;
  readonly comment?: string;
  private readonly host?: Host;
  private readonly ports?: PortRange;

  constructor(fields: Partial<Record<string, string>>) {
    for (const key of Object.keys(fields)) {
      if (!KEYS.has(key)) throw new FirewallRuleError(`Unknown rule element: ${key}`);
    }
    const action = fields.action;
    if (action === undefined) throw new FirewallRuleError('missing action=');
    this.action = oneOf(action, ['accept', 'drop'], 'action');
    const proto = fields.proto;
    if (proto !== undefined) this.proto = oneOf(proto, ['tcp', 'udp', 'icmp'], 'proto');
    const host = fields.dsthost ?? fields.dst4 ?? fields.dst6;
    if (host !== undefined) this.host = parseHost(host);
    if (fields.specialtarget !== undefined) {
      this.specialtarget = oneOf(fields.specialtarget, ['dns'], 'specialtarget');
    }
    if (fields.dstports !== undefined) {
      if (this.proto !== 'tcp' && this.proto !== 'udp') {
        throw new FirewallRuleError("dstports valid only for 'tcp' and 'udp' protocols");
      }
      this.ports = parsePorts(fields.dstports);
    }
    if (fields.icmptype !== undefined) {
      if (this.proto !== 'icmp') throw new FirewallRuleError("icmptype valid only for 'icmp' protocol");
      this.icmptype = parseInteger(fields.icmptype, 0, 255, 'ICMP type');
    }
    if (fields.expire !== undefined) {
      this.expire = parseInteger(fields.expire, 0, Number.MAX_SAFE_INTEGER, 'expire');
    }
    if (fields.comment !== undefined) this.comment = fields.comment;
  }

  /** Parses one rule in API syntax: space-separated `key=value`, everything after `comment=` is the comment. */
  static parse(line: string): FirewallRule {
    const at = line.indexOf('comment=');
    const options = at < 0 ? line : line.slice(0, at);
    const fields: Record<string, string> = {};
    for (const option of options.split(' ')) {
      if (option === '') continue;
      const eq = option.indexOf('=');
      if (eq <= 0) throw new FirewallRuleError(`invalid rule element: ${option}`);
      fields[option.slice(0, eq)] = option.slice(eq + 1);
    }
    if (at >= 0) fields.comment = line.slice(at + 'comment='.length);
    return new FirewallRule(fields);
  }

  /** Destination as written in a rule (`1.2.3.4/32`, `example.com`). */
  get dsthost(): string | undefined {
    return this.host?.text;
  }

  /** Ports the way a person writes them: `80` or `1024-2048`. */
  get dstports(): string | undefined {
    if (!this.ports) return undefined;
    return this.ports.from === this.ports.to
      ? String(this.ports.from)
      : `${this.ports.from}-${this.ports.to}`;
  }

  /** The API string qubesd accepts, in upstream's client order (the comment last: it takes the line's rest). */
  toString(): string {
    const parts = [`action=${this.action}`];
    if (this.proto) parts.push(`proto=${this.proto}`);
    // A zero-length prefix matches everything, so it is no restriction at all and is left out.
    if (this.host && (this.host.kind === 'dsthost' || this.host.prefix > 0)) {
      parts.push(`${this.host.kind}=${this.host.text}`);
    }
    if (this.ports) parts.push(`dstports=${this.ports.from}-${this.ports.to}`);
    if (this.icmptype !== undefined) parts.push(`icmptype=${this.icmptype}`);
    if (this.specialtarget) parts.push(`specialtarget=${this.specialtarget}`);
    if (this.expire !== undefined) parts.push(`expire=${this.expire}`);
    if (this.comment !== undefined) parts.push(`comment=${this.comment}`);
    return parts.join(' ');
  }

  equals(other: FirewallRule): boolean {
    return this.toString() === other.toString();
  }
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value))
    throw new FirewallRuleError(`Invalid ${what}: ${value}`);
  return value as T;
}

function parseInteger(text: string, min: number, max: number, what: string): number {
  if (!/^\d+$/.test(text)) throw new FirewallRuleError(`Invalid ${what}: ${text}`);
  const value = Number(text);
  if (value < min || value > max) throw new FirewallRuleError(`${what} out of range: ${text}`);
  return value;
}

function parsePorts(text: string): PortRange {
  const parts = text.split('-');
  if (parts.length > 2) throw new FirewallRuleError(`Invalid port range: ${text}`);
  const from = parseInteger(parts[0] ?? '', 0, 65535, 'port');
  const to = parts[1] === undefined ? from : parseInteger(parts[1], 0, 65535, 'port');
  if (from > to) throw new FirewallRuleError(`Invalid port range: ${text}`);
  return { from, to };
}

function parseHost(text: string): Host {
  const slash = text.indexOf('/');
  if (slash !== text.lastIndexOf('/')) throw new FirewallRuleError(`Too many /: ${text}`);
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  if (isIPv6(address)) return withPrefix('dst6', address, prefixText, 128);
  if (isIPv4(address)) return withPrefix('dst4', address, prefixText, 32);
  if (prefixText !== undefined) throw new FirewallRuleError(`Invalid IP address: ${address}`);
  if (!/^[a-z0-9._-]+$/.test(text)) throw new FirewallRuleError(`Invalid hostname: ${text}`);
  return { kind: 'dsthost', text, prefix: 0 };
}

function withPrefix(
  kind: 'dst4' | 'dst6',
  address: string,
  prefixText: string | undefined,
  max: number,
): Host {
  const prefix = prefixText === undefined ? max : parseInteger(prefixText, 0, max, 'netmask');
  return { kind, text: `${address}/${prefix}`, prefix };
}
