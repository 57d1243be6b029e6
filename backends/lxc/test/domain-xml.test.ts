import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { DomainSpec } from '@odyssey/hal';
import { INIT, NETWORK_CAPABILITIES, SYSTEMD_CAPABILITIES, domainXml } from '../src/domain-xml.js';
import { imageVolumes } from '../src/image-mounts.js';
import { GUEST_VCHAN_DIR } from '../src/runtime-files.js';
import { domainSchemaSkip, validateDomainXml } from '../../../libvirt/test/domain-schema.js';

const parse = (xml: string): Record<string, unknown> =>
  new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml) as Record<string, unknown>;

const spec: DomainSpec = {
  name: 'work',
  uuid: '6f1c5c8e-0000-4000-8000-000000000001',
  memoryMiB: 300,
  maxMemoryMiB: 500,
  vcpus: 2,
  virtMode: 'hvm',
  volumes: [
    { name: 'private', role: 'private', path: '/var/lib/qubes/work/private', format: 'dir', readOnly: false },
  ],
  debug: false,
};
const xml = domainXml({
  spec,
  rootDir: '/srv/root',
  vchanDir: '/run/o/lxc/work/vchan',
  uidBase: 1_000_065_536,
});

describe('lxc domain XML', () => {
  const domain = parse(xml)['domain'] as Record<string, Record<string, unknown>>;

  it('maps the whole domain to its own host uid and gid range', () => {
    expect(domain['idmap']).toEqual({
      uid: { start: '0', target: '1000065536', count: '65536' },
      gid: { start: '0', target: '1000065536', count: '65536' },
    });
  });

  it('runs our init with the domain name, drops every capability, has a private network namespace', () => {
    expect(domain['os']).toEqual({ type: 'exe', init: INIT, initarg: 'work' });
    expect(domain['features']).toEqual({ privnet: '', capabilities: { policy: 'deny' } });
    expect(domain['devices']?.['interface']).toBeUndefined();
  });

  it('limits memory to maxmem and CPU time to vcpus', () => {
    expect(domain['memory']).toEqual({ unit: 'MiB', '#text': 500 });
    expect(domain['cputune']).toEqual({ period: 100000, quota: 200000 });
  });

  it('mounts the root read-only, tmpfs /tmp and /run, the vchan dir, /rw and /home from /rw/home, nothing else of the host', () => {
    const fs = domain['devices']?.['filesystem'] as Record<string, Record<string, string>>[];
    expect(fs.map((f) => [f['type'], f['source'], f['target']?.['dir'], 'readonly' in f])).toEqual([
      ['mount', { dir: '/srv/root' }, '/', true],
      ['ram', { usage: '65536', units: 'KiB' }, '/tmp', false],
      ['ram', { usage: '16384', units: 'KiB' }, '/run', false],
      ['mount', { dir: '/run/o/lxc/work/vchan' }, GUEST_VCHAN_DIR, false],
      ['mount', { dir: '/var/lib/qubes/work/private' }, '/rw', false],
      ['mount', { dir: '/var/lib/qubes/work/private/home' }, '/home', false],
    ]);
  });

  it('mounts image-file volumes from where they are mounted on the host, the root writable', () => {
    const images: DomainSpec = {
      ...spec,
      volumes: [
        { name: 'root', role: 'root', path: '/var/lib/qubes/work/root.img', format: 'raw', readOnly: false },
        {
          name: 'private',
          role: 'private',
          path: '/var/lib/qubes/work/private.img',
          format: 'raw',
          readOnly: false,
        },
        {
          name: 'volatile',
          role: 'volatile',
          path: '/var/lib/qubes/work/volatile.img',
          format: 'raw',
          readOnly: false,
        },
      ],
    };
    const imageDirs = { root: '/run/o/lxc/work/mnt/root', private: '/run/o/lxc/work/mnt/private' };
    const input = {
      spec: images,
      rootDir: '/srv/root',
      vchanDir: '/run/o/lxc/work/vchan',
      uidBase: 1_000_065_536,
    };
    const mounts = (x: string) =>
      (
        ((parse(x)['domain'] as Record<string, Record<string, unknown>>)['devices']?.['filesystem'] ??
          []) as Record<string, unknown>[]
      )
        .filter((f) => f['type'] === 'mount')
        .map((f) => [
          (f['source'] as Record<string, string> | undefined)?.['dir'],
          (f['target'] as Record<string, string> | undefined)?.['dir'],
          'readonly' in f,
        ]);
    expect(mounts(domainXml({ ...input, imageDirs }))).toEqual([
      ['/run/o/lxc/work/mnt/root', '/', false],
      ['/run/o/lxc/work/vchan', GUEST_VCHAN_DIR, false],
      ['/run/o/lxc/work/mnt/private', '/rw', false],
      ['/run/o/lxc/work/mnt/private/home', '/home', false],
    ]);
  });

  const systemdXml = domainXml({
    spec,
    rootDir: '/srv/root',
    vchanDir: '/run/o/lxc/work/vchan',
    uidBase: 1_000_065_536,
    systemd: true,
  });

  it("gives a systemd root the 12 capabilities systemd needs and the network daemon's 3, and leaves /home to its init", () => {
    const d = parse(systemdXml)['domain'] as Record<string, Record<string, unknown>>;
    expect(d['os']).toEqual({ type: 'exe', init: INIT, initarg: 'work' });
    expect(d['features']).toEqual({
      privnet: '',
      capabilities: {
        policy: 'deny',
        audit_write: { state: 'on' },
        chown: { state: 'on' },
        dac_override: { state: 'on' },
        fowner: { state: 'on' },
        fsetid: { state: 'on' },
        kill: { state: 'on' },
        net_admin: { state: 'on' },
        net_bind_service: { state: 'on' },
        net_raw: { state: 'on' },
        setgid: { state: 'on' },
        setpcap: { state: 'on' },
        setuid: { state: 'on' },
        sys_admin: { state: 'on' },
        sys_chroot: { state: 'on' },
        sys_resource: { state: 'on' },
      },
    });
    expect(SYSTEMD_CAPABILITIES).toHaveLength(12);
    expect(NETWORK_CAPABILITIES).toEqual(['net_admin', 'net_bind_service', 'net_raw']);
    const fs = d['devices']?.['filesystem'] as Record<string, Record<string, string>>[];
    expect(fs.map((f) => f['target']?.['dir'])).toEqual(['/', '/tmp', '/run', GUEST_VCHAN_DIR, '/rw']);
  });

  describe('against libvirt schema', () => {
    const skip = domainSchemaSkip;
    if (skip) console.warn(`[lxc domain XML] schema check SKIPPED: ${skip}`);
    it.skipIf(skip)('validates as a domain, for both roots', async () => {
      expect(await validateDomainXml(xml)).toContain('validates');
      expect(await validateDomainXml(systemdXml)).toContain('validates');
    });
  });
});

describe('image-file volumes an lxc domain mounts', () => {
  const vol = (role: 'root' | 'private' | 'volatile', format: 'raw' | 'qcow2', readOnly = false) => ({
    name: role,
    role,
    path: `/var/lib/qubes/work/${role}.img`,
    format,
    readOnly,
  });
  const withVolumes = (...volumes: ReturnType<typeof vol>[]): DomainSpec => ({ ...spec, volumes });

  it('takes raw root and private images, leaves volatile out', () => {
    expect(
      imageVolumes(withVolumes(vol('root', 'raw'), vol('private', 'raw', true), vol('volatile', 'raw'))),
    ).toEqual([
      { role: 'root', path: '/var/lib/qubes/work/root.img', readOnly: false },
      { role: 'private', path: '/var/lib/qubes/work/private.img', readOnly: true },
    ]);
  });

  it('refuses qcow2 and a read-only root image as unsupported, a relative path as failed, saying why', () => {
    expect(() => imageVolumes(withVolumes(vol('private', 'qcow2')))).toThrow(
      expect.objectContaining({
        code: 'unsupported',
        message: expect.stringContaining('raw ext4 images only'),
      }),
    );
    expect(() => imageVolumes(withVolumes({ ...vol('private', 'raw'), path: '-oloop' }))).toThrow(
      expect.objectContaining({ code: 'failed', message: expect.stringContaining('not absolute') }),
    );
    expect(() => imageVolumes(withVolumes(vol('root', 'raw', true)))).toThrow(
      expect.objectContaining({ code: 'unsupported', message: expect.stringContaining('/.oldroot') }),
    );
  });
});
