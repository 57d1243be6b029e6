import type { NetRule } from './firewall-rules.js';

/**
 * The addresses a client is shown instead of its own (upstream's
 * net.fake-ip / net.fake-gateway, published as /mapped-ip/<ip>/): the client
 * uses them, the netvm and everything beyond it see only its real address.
 */
export interface VisibleAddresses {
  readonly ip: string;
  readonly gateway: string;
}

/** A client NIC inside the netvm. */
export interface ClientLink {
  readonly ifname: string;
  readonly ip: string;
  readonly visible?: VisibleAddresses;
}

/** Everything the netvm's ruleset is made of; the daemon gathers it, render() is pure. */
export interface NetvmState {
  /** The client NICs present now (anti-spoofing: each may send only from its own address). */
  readonly links: readonly ClientLink[];
  /** /connected-ips: the addresses of every client, running or not (as upstream lists them). */
  readonly connectedIps: readonly string[];
  /**
   * Each client's rules by address, `null` for a client whose rules could
   * not be read (blocked, as upstream's fallback). A client without an
   * entry has no chain and is dropped by the forward policy until its rules
   * arrive.
   */
  readonly firewalls: ReadonlyMap<string, readonly NetRule[] | null>;
  /** dsthost names resolved in the netvm; a name missing here blocks its client, as a failed lookup does upstream. */
  readonly resolved: ReadonlyMap<string, readonly string[]>;
  /** The netvm's own resolvers (its resolv.conf): DNS is forwarded to them, specialtarget=dns means them. */
  readonly nameservers: readonly string[];
  /** The addresses clients ask for DNS (/qubes-netvm-primary-dns, -secondary-dns: 10.139.1.1, 10.139.1.2). */
  readonly qubesDns: readonly string[];
  /** The netvm's gateway address for its clients (/qubes-netvm-gateway). */
  readonly gateway: string;
}

/** Upstream's chain_for_addr. */
export function chainForAddr(ip: string): string {
  return `qbs-${ip.replaceAll('.', '-')}`;
}

const REJECT = 'reject with icmp type admin-prohibited';
const set = (items: readonly string[]): string => `{ ${items.join(', ')} }`;

/**
 * The netvm's whole IPv4 ruleset as one nft transaction that replaces our
 * two tables, so a change is applied atomically and nothing stale stays:
 * `ip qubes` (upstream's qubes-antispoof.nft, qubes-ipv4.nft and
 * qubes-setup-dnat-to-ns: anti-spoofing, DNS DNAT, masquerade, no
 * forwarding towards a client unless it answers a connection) and
 * `ip qubes-firewall` (upstream's qubes-firewall daemon: per-client chains
 * in a forward chain whose policy is drop).
 */
export function renderRuleset(state: NetvmState): string {
  return [
    'add table ip qubes',
    'delete table ip qubes',
    'add table ip qubes-firewall',
    'delete table ip qubes-firewall',
    renderQubesTable(state),
    renderFirewallTable(state),
  ].join('\n');
}

function renderQubesTable(state: NetvmState): string {
  const downstream = state.links.map((link) => link.ip);
  const allowed = state.links.map((link) => `"${link.ifname}" . ${link.ip}`);
  const dnat: string[] = [];
  state.qubesDns.forEach((vmDns, i) => {
    const target = state.nameservers.length ? state.nameservers[i % state.nameservers.length] : undefined;
    for (const proto of ['udp', 'tcp']) {
      dnat.push(`ip daddr ${vmDns} ${proto} dport 53 ${target === undefined ? 'drop' : `dnat to ${target}`}`);
    }
  });
  return `table ip qubes {
${renderMappedChains(state.links, state.gateway)}  set downstream {
    type ipv4_addr
${downstream.length ? `    elements = ${set(downstream)}\n` : ''}  }
  set allowed {
    type ifname . ipv4_addr
${allowed.length ? `    elements = ${set(allowed)}\n` : ''}  }
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    iifgroup 2 goto antispoof
    ip saddr @downstream counter drop
  }
  chain antispoof {
    iifname . ip saddr @allowed accept
    counter drop
  }
  chain dnat-dns {
    type nat hook prerouting priority dstnat; policy accept;
${dnat.map((rule) => `    ${rule}\n`).join('')}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifgroup 2 accept
    oifname "lo" accept
    masquerade
  }
  chain input {
    type filter hook input priority filter; policy drop;
    ct state invalid counter drop
    iifgroup 2 meta l4proto udp udp dport 68 counter drop
    ct state related,established accept
    iifgroup 2 meta l4proto icmp accept
    iifname "lo" accept
    iifgroup 2 counter reject with icmp type host-prohibited
    counter
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state invalid counter drop
    ct state related,established accept
    oifgroup 2 counter drop
  }
}`;
}

/**
 * Upstream's vif-qubes-nat.sh, without its per-client network namespace:
 * what a client with visible addresses sends is rewritten to its real
 * address before conntrack and anti-spoofing see it (from any other source
 * it is dropped), and what reaches it is rewritten back on the way out, the
 * netvm's own gateway address included, so the client never sees a real
 * address. Its visible gateway is an address of its NIC in the netvm
 * (configureVif).
 */
function renderMappedChains(links: readonly ClientLink[], gateway: string): string {
  const mapped = links.filter((link) => link.visible !== undefined);
  if (mapped.length === 0) return '';
  const rules = (render: (link: ClientLink, visible: VisibleAddresses) => string[]): string =>
    mapped
      .flatMap((link) => render(link, link.visible as VisibleAddresses).map((rule) => `    ${rule}\n`))
      .join('');
  return `  chain mapped-in {
    type filter hook prerouting priority raw - 10; policy accept;
${rules((link, visible) => [
  `iifname "${link.ifname}" ip saddr != ${visible.ip} counter drop`,
  `iifname "${link.ifname}" ip saddr set ${link.ip}`,
])}  }
  chain mapped-out {
    type filter hook postrouting priority srcnat + 200; policy accept;
${rules((link, visible) => [
  `oifname "${link.ifname}" ip daddr ${link.ip} ip daddr set ${visible.ip}`,
  `oifname "${link.ifname}" ip saddr ${gateway} ip saddr set ${visible.gateway}`,
])}  }
`;
}

/**
 * A ruleset nft only checks (-c): whether this kernel lets the netvm
 * rewrite addresses as the mapped chains do. A container's user namespace
 * may not (Operation not permitted), and one refused rule would fail the
 * whole ruleset.
 */
export const REWRITE_PROBE = `table ip odyssey-rewrite-probe {
  chain c {
    type filter hook prerouting priority raw - 10; policy accept;
    ip saddr 192.0.2.1 ip saddr set 192.0.2.2
  }
}
`;

function renderFirewallTable(state: NetvmState): string {
  const clients = [...state.firewalls.keys()].sort();
  const connected = state.connectedIps;
  const chains = clients.map((ip) => {
    const rules = clientRules(state.firewalls.get(ip) ?? null, state.resolved);
    return `  chain ${chainForAddr(ip)} {\n${rules.map((rule) => `    ${rule}\n`).join('')}  }\n`;
  });
  return `table ip qubes-firewall {
  set dns-addr {
    type ipv4_addr
${state.nameservers.length ? `    elements = ${set(state.nameservers)}\n` : ''}  }
${chains.join('')}  chain qubes-forward {
${clients.map((ip) => `    ip saddr ${ip} jump ${chainForAddr(ip)}\n`).join('')}  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    meta iifname != "vif*" accept
    jump qubes-forward
  }
  chain prerouting {
    type filter hook prerouting priority -300; policy accept;
${connected.length ? `    iifname != "vif*" ip saddr ${set(connected)} drop\n` : ''}  }
  chain postrouting {
    type filter hook postrouting priority -300; policy accept;
${connected.length ? `    oifname != "vif*" ip daddr ${set(connected)} drop\n` : ''}  }
}
`;
}

/**
 * Upstream's prepare_rules for IPv4: each rule becomes one nft rule, or two
 * (tcp and udp) for ports without a protocol; drop is a reject with
 * admin-prohibited; a dns rule means port 53 of the netvm's resolvers and
 * is skipped when it names other ports. Rules that need a name that did not
 * resolve, or no rules at all, block the client.
 */
export function clientRules(
  rules: readonly NetRule[] | null,
  resolved: ReadonlyMap<string, readonly string[]>,
): string[] {
  if (rules === null) return [REJECT];
  const out: string[] = [];
  for (const rule of rules) {
    const action = rule.action === 'accept' ? 'accept' : REJECT;
    let match = '';
    if (rule.proto) match += ` ip protocol ${rule.proto}`;
    if (rule.dst4) match += ` ip daddr ${rule.dst4}`;
    else if (rule.dsthost !== undefined) {
      const addresses = resolved.get(rule.dsthost);
      if (!addresses?.length) return [REJECT];
      match += ` ip daddr ${set([...new Set(addresses)].map((a) => `${a}/32`))}`;
    }
    let ports = rule.dstports
      ? rule.dstports[0] === rule.dstports[1]
        ? `${rule.dstports[0]}`
        : rule.dstports.join('-')
      : undefined;
    if (rule.specialtarget === 'dns') {
      if (ports !== undefined && ports !== '53') continue;
      ports = '53';
      match += ' ip daddr @dns-addr';
    }
    if (rule.icmptype !== undefined) match += ` icmp type ${rule.icmptype}`;
    if (ports === undefined) out.push(`${match.trim()} ${action}`.trim());
    else if (rule.proto) out.push(`${match} ${rule.proto} dport ${ports} ${action}`.trim());
    else for (const proto of ['tcp', 'udp']) out.push(`${match} ${proto} dport ${ports} ${action}`.trim());
  }
  return out;
}
