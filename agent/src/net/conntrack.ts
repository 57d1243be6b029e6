import type { NetRule } from './firewall-rules.js';

/** A tracked connection of a client, as its original direction: protocol, destination, destination port. */
export interface TrackedConnection {
  readonly proto: string;
  readonly dst: string;
  readonly dport: number;
}

/** The connections in `conntrack -L` output that have a destination port (upstream's conntrack_get_connections). */
export function parseConntrackList(text: string): TrackedConnection[] {
  const seen = new Map<string, TrackedConnection>();
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const proto = fields[0];
    const dst = fields.find((f) => f.startsWith('dst='))?.slice('dst='.length);
    const dport = fields.find((f) => f.startsWith('dport='))?.slice('dport='.length);
    if (!proto || dst === undefined || dport === undefined || !/^[0-9]+$/.test(dport)) continue;
    const connection = { proto, dst, dport: Number(dport) };
    seen.set(`${proto} ${dst} ${dport}`, connection);
  }
  return [...seen.values()];
}

function inPrefix(address: string, cidr: string): boolean {
  const [base = '', prefix = '32'] = cidr.split('/');
  const toInt = (a: string): number => a.split('.').reduce((n, byte) => n * 256 + Number(byte), 0);
  const bits = Number(prefix);
  if (bits === 0) return true;
  const shift = 2 ** (32 - bits);
  return Math.floor(toInt(address) / shift) === Math.floor(toInt(base) / shift);
}

/**
 * Upstream's is_blocked: whether new rules would refuse an existing
 * connection, by the first rule that matches it (ports compared as numbers,
 * where upstream compares their text); unreadable rules block everything.
 */
export function isBlocked(
  rules: readonly NetRule[] | null,
  connection: TrackedConnection,
  resolved: ReadonlyMap<string, readonly string[]>,
  nameservers: readonly string[],
): boolean {
  if (rules === null) return true;
  for (const rule of rules) {
    if (rule.proto && rule.proto !== connection.proto) continue;
    if (rule.dstports && (connection.dport < rule.dstports[0] || connection.dport > rule.dstports[1]))
      continue;
    if (rule.dst4 && !inPrefix(connection.dst, rule.dst4)) continue;
    if (rule.dsthost !== undefined && !(resolved.get(rule.dsthost) ?? []).includes(connection.dst)) continue;
    if (rule.specialtarget === 'dns' && (connection.dport !== 53 || !nameservers.includes(connection.dst)))
      continue;
    return rule.action === 'drop';
  }
  return true;
}
