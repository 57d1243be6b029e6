import { readdir, readFile, writeFile } from 'node:fs/promises';
import { run } from './commands.js';
import type { VisibleAddresses } from './nft-ruleset.js';

/** A network interface as the kernel lists it in /sys/class/net. */
export interface Link {
  readonly ifname: string;
  readonly mac: string;
}

export async function listLinks(): Promise<Link[]> {
  const links: Link[] = [];
  for (const ifname of await readdir('/sys/class/net')) {
    if (ifname === 'lo') continue;
    const mac = await readFile(`/sys/class/net/${ifname}/address`, 'utf8').catch(() => '');
    if (mac.trim()) links.push({ ifname, mac: mac.trim().toLowerCase() });
  }
  return links;
}

/** What the qube's own QubesDB says about its frontend NIC (/qubes-ip etc.). */
export interface Frontend {
  readonly ip: string;
  readonly gateway: string;
  readonly dns: readonly string[];
}

/**
 * Upstream's setup-ip for the qube's own NIC: its address as a /32, group 1,
 * a link route to the gateway and the default route through it, and
 * resolv.conf with the DNS addresses of its netvm.
 */
export async function configureFrontend(
  ifname: string,
  frontend: Frontend,
  resolvConf: string,
): Promise<void> {
  // Again after a netvm change: the old address and its routes go with the flush.
  await run('ip', ['-4', 'address', 'flush', 'dev', ifname]);
  await run('ip', ['address', 'replace', `${frontend.ip}/32`, 'dev', ifname]);
  await run('ip', ['link', 'set', 'dev', ifname, 'group', '1', 'up']);
  await run('ip', ['route', 'replace', 'to', 'unicast', frontend.gateway, 'dev', ifname, 'scope', 'link']);
  await run('ip', [
    'route',
    'replace',
    'to',
    'unicast',
    'default',
    'via',
    frontend.gateway,
    'dev',
    ifname,
    'onlink',
  ]);
  await writeFile(resolvConf, frontend.dns.map((server) => `nameserver ${server}\n`).join(''));
}

/**
 * Upstream's vif-route-qubes for a client NIC: named vifXXXXXXXX, group 2
 * (what the rules match), proxy ARP, the netvm's gateway address as a /32
 * and a host route to the client. A client with visible addresses (see
 * nft-ruleset's mapped chains) sees its visible gateway instead: that address
 * with the client's visible one as its peer, so the netvm asks for the client
 * by that address from that address (arp_announce 2), and its real address
 * routed through it.
 */
export async function configureVif(
  ifname: string,
  vif: string,
  client: { readonly ip: string; readonly visible?: VisibleAddresses | undefined },
  gateway: string,
): Promise<void> {
  if (ifname !== vif) {
    await run('ip', ['link', 'set', 'dev', ifname, 'down']);
    await run('ip', ['link', 'set', 'dev', ifname, 'name', vif]);
  }
  await writeFile(`/proc/sys/net/ipv4/conf/${vif}/proxy_arp`, '1\n');
  // Again when a client's visible addresses change: the old addresses and their routes go with the flush.
  await run('ip', ['-4', 'address', 'flush', 'dev', vif]);
  const visible = client.visible;
  await writeFile(`/proc/sys/net/ipv4/conf/${vif}/arp_announce`, visible ? '2\n' : '0\n');
  if (visible)
    await run('ip', ['address', 'replace', visible.gateway, 'peer', `${visible.ip}/32`, 'dev', vif]);
  else await run('ip', ['address', 'replace', `${gateway}/32`, 'dev', vif]);
  await run('ip', ['link', 'set', 'dev', vif, 'group', '2', 'up']);
  const route = visible
    ? ['via', visible.ip, 'dev', vif, 'onlink', 'src', visible.gateway]
    : ['dev', vif, 'scope', 'link'];
  await run('ip', ['route', 'replace', client.ip, ...route]);
}

/** An uplink (sys-net's NIC on the VMM's own network): up, then addressed by the DHCP client. */
export async function configureUplink(
  ifname: string,
  dhcpClient: (ifname: string) => string[],
): Promise<void> {
  await run('ip', ['link', 'set', 'dev', ifname, 'group', '1', 'up']);
  const [file, ...args] = dhcpClient(ifname);
  if (file !== undefined) await run(file, args);
}

/** Debian's ISC client, in the background, with a pid and lease file per interface; its script writes resolv.conf. */
export const dhclient = (ifname: string): string[] => [
  'dhclient',
  '-4',
  '-nw',
  '-pf',
  `/run/dhclient.${ifname}.pid`,
  '-lf',
  `/var/lib/dhcp/dhclient.${ifname}.leases`,
  ifname,
];
