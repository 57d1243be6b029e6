import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { DomainSpec, VolumeSpec } from '@odyssey/hal';
import { domainXml } from '../src/domain-xml.js';
import { liveLinks } from '../src/network-xml.js';
import { domainSchemaSkip, validateDomainXml } from '../../../libvirt/test/domain-schema.js';

const spec: DomainSpec = {
  name: 'work',
  uuid: '4f8c2a1e-0b7d-4c55-9a3e-2f1d6b0c8e91',
  memoryMiB: 400,
  maxMemoryMiB: 0,
  vcpus: 2,
  virtMode: 'pv',
  kernel: { kernel: '/var/lib/qubes/vm-kernels/6.1/vmlinuz', initramfs: '/k/initramfs', cmdline: 'quiet' },
  volumes: [
    { name: 'root', role: 'root', path: '/pool/root.img', format: 'raw', readOnly: true },
    { name: 'private', role: 'private', path: '/pool/private.img', format: 'raw', readOnly: false },
    { name: 'volatile', role: 'volatile', path: '/pool/volatile.img', format: 'raw', readOnly: false },
    { name: 'kernel', role: 'kernel', path: '/var/lib/qubes/vm-kernels/6.1', format: 'dir', readOnly: true },
  ],
  debug: false,
};
const [root, privateVolume] = spec.volumes as [VolumeSpec, VolumeSpec];
const hvm = {
  deviceModel: '/usr/libexec/xen-qemu-system-i386',
  hvmloader: '/usr/lib/xen-4.17/boot/hvmloader',
};

const link = {
  frontendDomain: 'work',
  backendDomain: 'sys-firewall',
  mac: '00:16:3E:5E:6C:00',
  ip: '10.137.0.7',
};

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const parse = (xml: string): any => parser.parse(xml).domain;

async function validate(xml: string): Promise<void> {
  expect(await validateDomainXml(xml)).toMatch(/validates/);
}

describe('Xen domainXml', () => {
  it.skipIf(domainSchemaSkip)(
    'produces XML that virt-xml-validate accepts (PV, PVH, HVM with and without a kernel)',
    async () => {
      await validate(domainXml({ spec }));
      await validate(domainXml({ spec: { ...spec, virtMode: 'pvh', maxMemoryMiB: 4000 } }));
      await validate(domainXml({ spec: { ...spec, virtMode: 'hvm' }, hvm }));
      await validate(domainXml({ spec: { ...spec, virtMode: 'hvm', kernel: undefined }, hvm }));
      await validate(domainXml({ spec: { ...spec, network: { link, uplink: true } } }));
    },
  );

  it('boots a PV guest directly with the Xen console', () => {
    const d = parse(domainXml({ spec }));
    expect(d.type).toBe('xen');
    expect(d.os.type).toEqual({ arch: 'x86_64', machine: 'xenpv', '#text': 'linux' });
    expect(d.os.kernel).toBe(spec.kernel?.kernel);
    expect(d.os.initrd).toBe('/k/initramfs');
    expect(d.os.cmdline).toBe('quiet console=hvc0 root=/dev/xvda');
    expect(d.devices.console).toEqual({ type: 'pty', target: { type: 'xen', port: '0' } });
    expect(d.devices).not.toHaveProperty('emulator');
    expect(d.on_poweroff).toBe('destroy');
    expect(d.on_reboot).toBe('destroy');
    expect(d.on_crash).toBe('destroy');
    expect(d.vcpu).toBe(2);
  });

  it('types a PVH guest as libvirt 9 names it', () => {
    const d = parse(domainXml({ spec: { ...spec, virtMode: 'pvh' } }));
    expect(d.os.type).toEqual({ arch: 'x86_64', machine: 'xenpvh', '#text': 'xenpvh' });
    expect(d.os.cmdline).toBe('quiet console=hvc0 root=/dev/xvda');
  });

  it('gives an HVM guest its firmware, device model and serial console', () => {
    const d = parse(domainXml({ spec: { ...spec, virtMode: 'hvm' }, hvm }));
    expect(d.os.type).toEqual({ arch: 'x86_64', machine: 'xenfv', '#text': 'hvm' });
    expect(d.os.loader).toEqual({ type: 'rom', '#text': hvm.hvmloader });
    expect(d.os.cmdline).toBe('quiet console=ttyS0 root=/dev/xvda');
    expect(d.devices.emulator).toBe(hvm.deviceModel);
    expect(d.devices.serial).toEqual({ type: 'pty', target: { port: '0' } });
    expect(d.features).toHaveProperty('acpi');
    const fromDisk = parse(domainXml({ spec: { ...spec, virtMode: 'hvm', kernel: undefined }, hvm }));
    expect(fromDisk.os.boot).toEqual({ dev: 'hd' });
  });

  it('keeps a console= the spec chose', () => {
    const d = parse(domainXml({ spec: { ...spec, kernel: { kernel: '/k', cmdline: 'console=tty0' } } }));
    expect(d.os.cmdline).toBe('console=tty0 root=/dev/xvda');
  });

  it("names the root volume's disk as the kernel's root unless the spec names one or has no root", () => {
    const cmdline = (s: DomainSpec): unknown => parse(domainXml({ spec: s })).os.cmdline;
    expect(cmdline({ ...spec, kernel: { kernel: '/k', cmdline: 'root=/dev/xvdb ro' } })).toBe(
      'root=/dev/xvdb ro console=hvc0',
    );
    const kernelDirOnly = spec.volumes.filter((v) => v.role !== 'root');
    expect(cmdline({ ...spec, volumes: kernelDirOnly })).toBe('quiet console=hvc0');
  });

  it('maps volumes to blkback (phy) disks in Qubes order, skipping kernel dirs', () => {
    const disks = parse(domainXml({ spec })).devices.disk;
    expect(disks.map((d: { target: { dev: string } }) => d.target.dev)).toEqual(['xvda', 'xvdb', 'xvdc']);
    expect(disks[0]).toMatchObject({
      type: 'file',
      device: 'disk',
      driver: { name: 'phy', type: 'raw' },
      source: { file: '/pool/root.img' },
      target: { dev: 'xvda', bus: 'xen' },
    });
    expect(disks[0]).toHaveProperty('readonly');
    expect(disks[1]).not.toHaveProperty('readonly');
    const modules = parse(
      domainXml({
        spec: {
          ...spec,
          volumes: [
            { name: 'kernel', role: 'kernel', path: '/k/modules.img', format: 'raw', readOnly: true },
          ],
        },
      }),
    ).devices.disk;
    expect(modules.target.dev).toBe('xvdd');
  });

  it('balloons only when maxmem exceeds memory', () => {
    const fixed = parse(domainXml({ spec }));
    expect(fixed.memory['#text']).toBe(400);
    expect(fixed.currentMemory['#text']).toBe(400);
    const balloon = parse(domainXml({ spec: { ...spec, maxMemoryMiB: 4000 } }));
    expect(balloon.memory['#text']).toBe(4000);
    expect(balloon.currentMemory['#text']).toBe(400);
  });

  it("gives a client the vif its netvm serves (MAC, address, backend domain) and sys-net dom0's uplink", () => {
    expect(parse(domainXml({ spec })).devices).not.toHaveProperty('interface');
    const client = domainXml({ spec: { ...spec, network: { link, uplink: false } } });
    expect(parse(client).devices.interface).toEqual({
      type: 'ethernet',
      mac: { address: '00:16:3e:5e:6c:00' },
      ip: { address: '10.137.0.7', family: 'ipv4' },
      backenddomain: { name: 'sys-firewall' },
      model: { type: 'netfront' },
    });
    expect(liveLinks(client)).toEqual([{ mac: '00:16:3e:5e:6c:00', backendDomain: 'sys-firewall' }]);
    const sysNet = domainXml({ spec: { ...spec, network: { uplink: true } } });
    expect(parse(sysNet).devices.interface).toEqual({
      type: 'bridge',
      source: { bridge: 'odyssey-up0' },
      model: { type: 'netfront' },
    });
    // The uplink's backend is dom0, not a link to another qube.
    expect(liveLinks(sysNet)).toEqual([]);
  });

  it('refuses what it cannot run, saying why', () => {
    const qcow2 = { ...spec, volumes: [{ ...privateVolume, format: 'qcow2' as const }] };
    expect(() => domainXml({ spec: qcow2 })).toThrow(/qcow2 would need QEMU \(qdisk\) in dom0/);
    expect(() => domainXml({ spec: { ...spec, kernel: undefined } })).toThrow(/runs no bootloader/);
    expect(() => domainXml({ spec: { ...spec, virtMode: 'hvm' } })).toThrow(
      expect.objectContaining({ code: 'unsupported' }),
    );
  });

  it('escapes every value', () => {
    const hostile = 'a<b>&\'"</name><evil/>';
    const xml = domainXml({
      spec: {
        ...spec,
        name: hostile,
        kernel: { kernel: `/k/${hostile}`, cmdline: `x='1' & <y>` },
        volumes: [{ ...root, path: `/pool/${hostile}` }],
      },
    });
    expect(xml).not.toContain('<evil/>');
    const d = parse(xml);
    expect(d.name).toBe(hostile);
    expect(d.os.kernel).toBe(`/k/${hostile}`);
    expect(d.os.cmdline).toBe(`x='1' & <y> console=hvc0 root=/dev/xvda`);
    expect(d.devices.disk.source.file).toBe(`/pool/${hostile}`);
  });
});
