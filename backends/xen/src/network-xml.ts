import { XMLParser } from 'fast-xml-parser';
import type { NetworkLink } from '@odyssey/hal';
import { attrs, type XmlNode } from '@odyssey/libvirt-hal';
import { UPLINK_BRIDGE } from './uplink.js';

/**
 * The client's vif, as upstream Qubes defines it: the qube's own MAC, its address (libxl writes it
 * into the backend directory, where the netvm's daemon reads it) and the netvm as the backend
 * domain, so netback in the netvm serves it. `netfront` keeps it a PV vif in every virt mode.
 */
export function linkInterface(link: NetworkLink): XmlNode {
  return {
    ...attrs({ type: 'ethernet' }),
    mac: attrs({ address: link.mac.toLowerCase() }),
    ip: attrs({ address: link.ip, family: 'ipv4' }),
    backenddomain: attrs({ name: link.backendDomain }),
    model: attrs({ type: 'netfront' }),
  };
}

/**
 * The uplink of a netvm without netvm: a vif served by dom0 on its uplink bridge (uplink.ts).
 * libvirt picks the MAC, so it is neither the qube's nor fe:00:*, which is how the guest tells an
 * uplink apart.
 */
export function uplinkInterface(): XmlNode {
  return {
    ...attrs({ type: 'bridge' }),
    source: attrs({ bridge: UPLINK_BRIDGE }),
    model: attrs({ type: 'netfront' }),
  };
}

/** A vif of a live domain whose backend is another domain (a link), as its XML describes it. */
export interface LiveLink {
  readonly mac: string;
  readonly backendDomain: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  isArray: (name) => name === 'interface',
});

interface ParsedInterface {
  mac?: { address?: string };
  backenddomain?: { name?: string };
}

export function liveLinks(domainXml: string): LiveLink[] {
  const parsed = parser.parse(domainXml) as { domain?: { devices?: { interface?: ParsedInterface[] } } };
  const found: LiveLink[] = [];
  for (const nic of parsed.domain?.devices?.interface ?? []) {
    const mac = nic.mac?.address;
    const backendDomain = nic.backenddomain?.name;
    if (mac && backendDomain) found.push({ mac: mac.toLowerCase(), backendDomain });
  }
  return found;
}
