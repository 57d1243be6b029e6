import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { backendMac, type DomainSpec, type NetworkLink } from '@odyssey/hal';
import { buildDeviceXml } from '@odyssey/libvirt-hal';
import { domainXml } from '../src/domain-xml.js';
import { LinkPortPool } from '../src/link-ports.js';
import { frontendInterface, udpInterfaces } from '../src/network-xml.js';
import { domainSchemaSkip, validateDomainXml } from '../../../libvirt/test/domain-schema.js';

const link: NetworkLink = {
  frontendDomain: 'work',
  backendDomain: 'sys-firewall',
  mac: '00:16:3E:5E:6C:05',
  ip: '10.137.0.5',
};
const ports = { frontend: 40001, backend: 40002 };

const base: DomainSpec = {
  name: 'work',
  uuid: '4f8c2a1e-0b7d-4c55-9a3e-2f1d6b0c8e91',
  memoryMiB: 400,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  kernel: { kernel: '/k/vmlinuz', initramfs: '/k/initramfs', cmdline: '' },
  volumes: [],
  debug: false,
};
const files = { type: 'qemu' as const, consoleLog: '/run/o/console.log', vchanSocket: '/run/o/vchan.sock' };

async function validate(xml: string): Promise<void> {
  expect(await validateDomainXml(xml)).toMatch(/validates/);
}

describe('network links in domain XML', () => {
  it('encodes the client IPv4 address in the netvm side MAC', () => {
    expect(backendMac('10.137.0.5')).toBe('fe:00:0a:89:00:05');
    expect(backendMac('255.0.16.1')).toBe('fe:00:ff:00:10:01');
    expect(() => backendMac('10.137.0')).toThrow(/not an IPv4/);
  });

  it('gives the client one UDP NIC with its MAC', () => {
    const xml = domainXml({
      spec: { ...base, network: { link, uplink: false } },
      linkPorts: ports,
      ...files,
    });
    expect(udpInterfaces(xml)).toEqual([{ mac: '00:16:3e:5e:6c:05', ports }]);
    expect(xml).toContain('<source address="127.0.0.1" port="40002">');
    expect(xml).toContain('<local address="127.0.0.1" port="40001"');
    expect(xml).toContain('<model type="virtio"');
    expect(xml).not.toContain('type="user"');
  });

  it('gives a netvm without netvm a user-mode uplink and no link', () => {
    const xml = domainXml({ spec: { ...base, network: { uplink: true } }, ...files });
    expect(xml).toMatch(/<interface type="user">\s*<model type="virtio"/);
    expect(udpInterfaces(xml)).toEqual([]);
    expect(domainXml({ spec: base, ...files })).not.toContain('<interface');
  });

  it('refuses a link without ports', () => {
    expect(() => domainXml({ spec: { ...base, network: { link, uplink: false } }, ...files })).toThrow(
      /no ports/,
    );
  });

  it.skipIf(domainSchemaSkip)('produces domain and device XML that virt-xml-validate accepts', async () => {
    await validate(
      domainXml({ spec: { ...base, network: { link, uplink: true } }, linkPorts: ports, ...files }),
    );
    // The device alone, as a hot-plug call would take it, checked inside a domain (libvirt's schema has no root for it).
    const alone = domainXml({ spec: base, ...files }).replace(
      '</devices>',
      `${buildDeviceXml('interface', frontendInterface(link, ports))}</devices>`,
    );
    await validate(alone);
  });
});

describe('LinkPortPool', () => {
  it('hands out distinct ports, none held by another socket, and keeps them until released', async () => {
    const taken = createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(0, '127.0.0.1', resolve));
    const busy = taken.address().port;
    try {
      const pool = new LinkPortPool();
      const seen = new Set<number>();
      for (const name of ['a', 'b', 'c', 'd']) {
        const p = await pool.allocate(name);
        for (const port of [p.frontend, p.backend]) {
          expect(port).not.toBe(busy);
          expect(seen.has(port)).toBe(false);
          seen.add(port);
        }
      }
      expect(pool.held('a')).toHaveLength(2);
      const again = await pool.allocate('a');
      expect(pool.held('a').sort()).toEqual([again.frontend, again.backend].sort());
      pool.release('a');
      expect(pool.held('a')).toEqual([]);
      pool.claim('e', { frontend: 1, backend: 2 });
      expect(pool.held('e')).toEqual([1, 2]);
    } finally {
      taken.close();
    }
  });
});
