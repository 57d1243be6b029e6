import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { DomainSpec } from '@odyssey/hal';
import { domainXml } from '../src/domain-xml.js';
import { domainSchemaSkip, validateDomainXml } from '../../../libvirt/test/domain-schema.js';

const spec: DomainSpec = {
  name: 'work',
  uuid: '4f8c2a1e-0b7d-4c55-9a3e-2f1d6b0c8e91',
  memoryMiB: 400,
  maxMemoryMiB: 0,
  vcpus: 2,
  virtMode: 'pvh',
  kernel: { kernel: '/var/lib/qubes/vm-kernels/6.1/vmlinuz', initramfs: '/k/initramfs', cmdline: 'quiet' },
  volumes: [
    { name: 'root', role: 'root', path: '/pool/root.img', format: 'raw', readOnly: true },
    { name: 'private', role: 'private', path: '/pool/private.qcow2', format: 'qcow2', readOnly: false },
    { name: 'kernel', role: 'kernel', path: '/var/lib/qubes/vm-kernels/6.1', format: 'dir', readOnly: true },
  ],
  debug: false,
};

const files = { consoleLog: '/run/odyssey/work/console.log', vchanSocket: '/run/odyssey/work/vchan.sock' };
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const parse = (xml: string): any => parser.parse(xml).domain;

async function validate(xml: string): Promise<void> {
  expect(await validateDomainXml(xml)).toMatch(/validates/);
}

describe('domainXml', () => {
  it.skipIf(domainSchemaSkip)('produces XML that virt-xml-validate accepts (TCG and KVM)', async () => {
    await validate(domainXml({ spec, type: 'qemu', ...files }));
    await validate(domainXml({ spec, type: 'kvm', ...files }));
    await validate(
      domainXml({ spec: { ...spec, kernel: undefined, maxMemoryMiB: 4000 }, type: 'qemu', ...files }),
    );
  });

  it('boots the kernel directly with the console the guest needs', () => {
    const d = parse(domainXml({ spec, type: 'qemu', ...files }));
    expect(d.type).toBe('qemu');
    expect(d.os.kernel).toBe(spec.kernel?.kernel);
    expect(d.os.initrd).toBe('/k/initramfs');
    expect(d.os.cmdline).toBe('quiet console=ttyS0 panic=-1 root=/dev/vda');
    expect(d.features).toHaveProperty('acpi');
    expect(d.on_poweroff).toBe('destroy');
    // A kernel panic reaches libvirt through pvpanic and ends the domain as crashed.
    expect(d.devices.panic).toEqual({ model: 'isa' });
    expect(d.on_crash).toBe('destroy');
    // ttyS0 on a pty for admin.vm.Console, logged to the console log too.
    expect(d.devices.serial).toMatchObject({ type: 'pty', log: { file: files.consoleLog, append: 'off' } });
    expect(d.devices.console).toEqual({ type: 'pty', target: { type: 'serial', port: '0' } });
    expect(d.devices.channel).toMatchObject({
      type: 'unix',
      source: { mode: 'bind', path: files.vchanSocket },
      target: { type: 'virtio', name: 'org.odyssey.vchan.0' },
    });
  });

  it('keeps a console= the spec chose', () => {
    const d = parse(
      domainXml({
        spec: { ...spec, kernel: { kernel: '/k', cmdline: 'console=hvc0' } },
        type: 'qemu',
        ...files,
      }),
    );
    expect(d.os.cmdline).toBe('console=hvc0 panic=-1 root=/dev/vda');
  });

  it('names the root disk as root= unless kernelopts does, and none without a root disk', () => {
    const cmdline = (over: Partial<DomainSpec>) =>
      parse(domainXml({ spec: { ...spec, ...over }, type: 'qemu', ...files })).os.cmdline as string;
    expect(cmdline({ kernel: { kernel: '/k', cmdline: 'root=/dev/vdb ro' } })).toBe(
      'root=/dev/vdb ro console=ttyS0 panic=-1',
    );
    expect(cmdline({ volumes: spec.volumes.filter((v) => v.role !== 'root') })).toBe(
      'quiet console=ttyS0 panic=-1',
    );
  });

  it('maps volumes to virtio disks in Qubes order, with format and read-only flag, skipping kernel dirs', () => {
    const disks = parse(domainXml({ spec, type: 'qemu', ...files })).devices.disk;
    expect(disks).toHaveLength(2);
    expect(disks[0]).toMatchObject({
      driver: { type: 'raw' },
      source: { file: '/pool/root.img' },
      target: { dev: 'vda', bus: 'virtio' },
    });
    expect(disks[0]).toHaveProperty('readonly');
    expect(disks[1]).toMatchObject({ driver: { type: 'qcow2' }, target: { dev: 'vdb' } });
    expect(disks[1]).not.toHaveProperty('readonly');
  });

  it('balloons only when maxmem exceeds memory', () => {
    const fixed = parse(domainXml({ spec, type: 'qemu', ...files }));
    expect(fixed.devices.memballoon.model).toBe('none');
    expect(fixed.memory['#text']).toBe(400);
    const balloon = parse(domainXml({ spec: { ...spec, maxMemoryMiB: 4000 }, type: 'qemu', ...files }));
    expect(balloon.devices.memballoon.model).toBe('virtio');
    expect(balloon.memory['#text']).toBe(4000);
    expect(balloon.currentMemory['#text']).toBe(400);
  });

  it('escapes every value', () => {
    const hostile = 'a<b>&\'"</name><evil/>';
    const xml = domainXml({
      spec: { ...spec, name: hostile, kernel: { kernel: '/k', cmdline: `x='1' & <y>` } },
      type: 'qemu',
      consoleLog: `/tmp/${hostile}`,
      vchanSocket: '/tmp/s',
    });
    expect(xml).not.toContain('<evil/>');
    const d = parse(xml);
    expect(d.name).toBe(hostile);
    expect(d.os.cmdline).toBe(`x='1' & <y> console=ttyS0 panic=-1 root=/dev/vda`);
    expect(d.devices.serial.log.file).toBe(`/tmp/${hostile}`);
  });
});
