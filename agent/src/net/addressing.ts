import { isIPv4 } from 'node:net';

/**
 * The contract between core's backends and the guest: inside a netvm, the
 * NIC of a client has the MAC fe:00:AA:BB:CC:DD, AA..DD the client's IPv4
 * address; any other NIC that is not the qube's own /qubes-mac is an uplink.
 */
const CLIENT_MAC = /^fe:00:([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/;

/** The client address a client NIC's MAC encodes, or undefined for any other MAC. */
export function clientIpOfMac(mac: string): string | undefined {
  const match = CLIENT_MAC.exec(mac.toLowerCase());
  if (!match) return undefined;
  return match
    .slice(1, 5)
    .map((hex) => String(parseInt(hex, 16)))
    .join('.');
}

export function macOfClientIp(ip: string): string {
  if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return `fe:00:${ip
    .split('.')
    .map((byte) => Number(byte).toString(16).padStart(2, '0'))
    .join(':')}`;
}

/** A client NIC's name: `vif` and the address in hex (11 characters, within IFNAMSIZ), so rules match `vif*`. */
export function vifName(ip: string): string {
  return `vif${macOfClientIp(ip).slice('fe:00:'.length).replaceAll(':', '')}`;
}

/** The IPv4 nameservers of a resolv.conf, in order (upstream's get_dns_resolv_conf). */
export function resolvConfNameservers(text: string): string[] {
  const servers: string[] = [];
  for (const line of text.split('\n')) {
    const [keyword, address] = line.trim().split(/\s+/);
    if (keyword === 'nameserver' && address !== undefined && isIPv4(address)) servers.push(address);
  }
  return servers;
}
