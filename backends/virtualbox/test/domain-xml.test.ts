import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { VmmError, type DomainSpec } from '@odyssey/hal';
import { VCHAN_SERIAL_PORT, domainXml } from '../src/domain-xml.js';
import { domainSchemaSkip, validateDomainXml } from '../../../libvirt/test/domain-schema.js';

const parse = (xml: string): Record<string, unknown> =>
  new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml) as Record<string, unknown>;

const spec: DomainSpec = {
  name: 'work',
  uuid: '6f1c5c8e-0000-4000-8000-000000000002',
  memoryMiB: 400,
  maxMemoryMiB: 4000,
  vcpus: 2,
  virtMode: 'hvm',
  volumes: [
    { name: 'root', role: 'root', path: '/var/lib/qubes/work/root.img', format: 'raw', readOnly: true },
    {
      name: 'private',
      role: 'private',
      path: '/var/lib/qubes/work/private.img',
      format: 'raw',
      readOnly: false,
    },
  ],
  debug: false,
};
const pipe = '/run/o/virtualbox/work/vchan.pipe';
const xml = domainXml({ spec, vchanPipe: pipe });

describe('virtualbox domain XML', () => {
  const domain = parse(xml)['domain'] as Record<string, Record<string, unknown>>;

  it('is a vbox domain with memory fixed at `memory` (no balloon) and its vcpus', () => {
    expect(domain['type']).toBe('vbox');
    expect(domain['memory']).toEqual({ unit: 'MiB', '#text': 400 });
    expect(domain['vcpu']).toBe(2);
    expect(domain['os']).toEqual({ type: 'hvm', boot: { dev: 'hd' } });
  });

  it('attaches the volumes as SATA disks in order, the read-only one read-only', () => {
    expect(domain['devices']?.['disk']).toEqual([
      {
        type: 'file',
        device: 'disk',
        source: { file: '/var/lib/qubes/work/root.img' },
        target: { dev: 'sda', bus: 'sata' },
        readonly: '',
      },
      {
        type: 'file',
        device: 'disk',
        source: { file: '/var/lib/qubes/work/private.img' },
        target: { dev: 'sdb', bus: 'sata' },
      },
    ]);
  });

  it('carries the vchans on serial port 1 in host-pipe mode at the domain’s pipe', () => {
    expect(domain['devices']?.['serial']).toEqual({
      type: 'pipe',
      source: { path: pipe },
      target: { port: String(VCHAN_SERIAL_PORT) },
    });
  });

  it('refuses what libvirt’s vbox driver cannot boot: a direct kernel, a directory volume', () => {
    const kernel = { ...spec, kernel: { kernel: '/k/vmlinuz', cmdline: 'console=ttyS0' } };
    expect(() => domainXml({ spec: kernel, vchanPipe: pipe })).toThrow(VmmError);
    expect(() => domainXml({ spec: kernel, vchanPipe: pipe })).toThrow(/cannot boot a kernel directly/);
    const dir = {
      ...spec,
      volumes: [
        { name: 'root', role: 'root' as const, path: '/srv/root', format: 'dir' as const, readOnly: true },
      ],
    };
    expect(() => domainXml({ spec: dir, vchanPipe: pipe })).toThrow(/VirtualBox attaches image files only/);
  });

  describe('against libvirt schema', () => {
    const skip = domainSchemaSkip;
    if (skip) console.warn(`[virtualbox domain XML] schema check SKIPPED: ${skip}`);
    it.skipIf(skip)('validates as a domain', async () => {
      expect(await validateDomainXml(xml)).toContain('validates');
    });

    it.skipIf(skip)('is refused by the schema when broken (the check can fail)', async () => {
      const broken = xml
        .replace("type='pipe'", "type='no-such-type'")
        .replace('type="pipe"', 'type="no-such-type"');
      await expect(validateDomainXml(broken)).rejects.toThrow();
    });
  });
});
