import { XMLParser } from 'fast-xml-parser';
import type { NetworkLink } from '@odyssey/hal';
import { attrs, type XmlNode } from '@odyssey/libvirt-hal';

/** Every link's UDP sockets are on the host's loopback: QEMU talks to QEMU, nothing else hears. */
export const LINK_ADDRESS = '127.0.0.1';

/**
 * The two UDP ports of one link: QEMU of the frontend domain binds `frontend` and sends to
 * `backend`; QEMU of the netvm binds `backend` and sends to `frontend`.
 */
export interface LinkPorts {
  readonly frontend: number;
  readonly backend: number;
}

function udpInterface(mac: string, local: number, remote: number): XmlNode {
  return {
    ...attrs({ type: 'udp' }),
    mac: attrs({ address: mac }),
    source: {
      ...attrs({ address: LINK_ADDRESS, port: remote }),
      local: attrs({ address: LINK_ADDRESS, port: local }),
    },
    model: attrs({ type: 'virtio' }),
  };
}

/** The client's interface: its own MAC (QubesDB /qubes-mac). */
export function frontendInterface(link: NetworkLink, ports: LinkPorts): XmlNode {
  return udpInterface(link.mac.toLowerCase(), ports.frontend, ports.backend);
}

/**
 * The uplink of a netvm without netvm: QEMU's user-mode network (slirp). The guest gets
 * 10.0.2.15 by DHCP, reaches the host's loopback as 10.0.2.2 and slirp's DNS at 10.0.2.3; nothing
 * outside can connect in. libvirt picks the MAC, so it is neither the qube's nor fe:00:*, which is
 * how the guest tells an uplink apart.
 */
export function uplinkInterface(): XmlNode {
  return { ...attrs({ type: 'user' }), model: attrs({ type: 'virtio' }) };
}

/** A UDP interface of a live domain, as its XML describes it. */
export interface LiveUdpInterface {
  readonly mac: string;
  readonly ports: LinkPorts;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  isArray: (name) => name === 'interface',
});

interface ParsedInterface {
  type?: string;
  mac?: { address?: string };
  source?: { port?: string; local?: { port?: string } };
}

/**
 * The UDP interfaces in a domain's XML, their ports seen from that domain: `frontend` is the one
 * it binds when it is the frontend (its `local` port), `backend` the one it sends to.
 */
export function udpInterfaces(domainXml: string): LiveUdpInterface[] {
  const parsed = parser.parse(domainXml) as { domain?: { devices?: { interface?: ParsedInterface[] } } };
  const found: LiveUdpInterface[] = [];
  for (const nic of parsed.domain?.devices?.interface ?? []) {
    const mac = nic.mac?.address;
    const local = Number(nic.source?.local?.port);
    const remote = Number(nic.source?.port);
    if (nic.type !== 'udp' || !mac || !Number.isInteger(local) || !Number.isInteger(remote)) continue;
    found.push({ mac: mac.toLowerCase(), ports: { frontend: local, backend: remote } });
  }
  return found;
}
