import { describe, expect, it } from 'vitest';

import { QubesException } from '../../src/model/errors.js';
import type { VolumeConfig } from '../../src/storage/driver.js';
import { FilePool } from '../../src/storage/drivers/file.js';
import { defaultVolumeLayout, type LayoutRequest } from '../../src/storage/layout.js';
import { volumeConfigFromXml, volumeConfigToXml } from '../../src/storage/volume-config.js';

const common: Omit<LayoutRequest, 'vmClass' | 'name'> = {
  defaultPool: () => 'varlibqubes',
  kernelPool: 'linux-kernel',
  kernel: '6.6.1',
};

const varlibqubes = new FilePool('varlibqubes', { dir_path: '/var/lib/qubes' });

/** The `<volume .../>` attributes qubes.xml gets: the file pool settles revisions_to_keep. */
const saved = (configs: readonly VolumeConfig[], dirPrefix: 'appvms' | 'vm-templates', name: string) =>
  configs.map((c) =>
    volumeConfigToXml(c.pool === 'varlibqubes' ? varlibqubes.initVolume({ name, dirPrefix }, c).config() : c),
  );

/** The `<volume-config>` of §5's qubes.xml example, attribute for attribute. */
const TEMPLATE_XML: Record<string, string>[] = [
  {
    name: 'root',
    pool: 'varlibqubes',
    vid: 'vm-templates/debian-12/root',
    revisions_to_keep: '1',
    rw: 'True',
    save_on_stop: 'True',
    snap_on_start: 'False',
    size: '10737418240',
  },
  {
    name: 'private',
    pool: 'varlibqubes',
    vid: 'vm-templates/debian-12/private',
    revisions_to_keep: '1',
    rw: 'True',
    save_on_stop: 'True',
    snap_on_start: 'False',
    size: '2147483648',
  },
  {
    name: 'volatile',
    pool: 'varlibqubes',
    vid: 'vm-templates/debian-12/volatile',
    revisions_to_keep: '0',
    rw: 'True',
    save_on_stop: 'False',
    snap_on_start: 'False',
    size: '10737418240',
  },
  {
    name: 'kernel',
    pool: 'linux-kernel',
    vid: '6.6.1',
    revisions_to_keep: '0',
    rw: 'False',
    save_on_stop: 'False',
    snap_on_start: 'False',
  },
];

const APPVM_XML: Record<string, string>[] = [
  {
    name: 'root',
    pool: 'varlibqubes',
    vid: 'appvms/sys-net/root',
    revisions_to_keep: '0',
    rw: 'True',
    save_on_stop: 'False',
    snap_on_start: 'True',
    size: '10737418240',
    source: 'vm-templates/debian-12/root',
  },
  {
    name: 'private',
    pool: 'varlibqubes',
    vid: 'appvms/sys-net/private',
    revisions_to_keep: '1',
    rw: 'True',
    save_on_stop: 'True',
    snap_on_start: 'False',
    size: '2147483648',
  },
  {
    name: 'volatile',
    pool: 'varlibqubes',
    vid: 'appvms/sys-net/volatile',
    revisions_to_keep: '0',
    rw: 'True',
    save_on_stop: 'False',
    snap_on_start: 'False',
    size: '10737418240',
  },
  {
    name: 'kernel',
    pool: 'linux-kernel',
    vid: '6.6.1',
    revisions_to_keep: '0',
    rw: 'False',
    save_on_stop: 'False',
    snap_on_start: 'False',
  },
];

describe('default volume layout', () => {
  const template = defaultVolumeLayout({ ...common, vmClass: 'TemplateVM', name: 'debian-12' });

  it('TemplateVM matches the qubes.xml example, attribute order included', () => {
    const xml = saved(template, 'vm-templates', 'debian-12');
    expect(xml).toEqual(TEMPLATE_XML);
    expect(xml.map((a) => Object.keys(a))).toEqual(TEMPLATE_XML.map((a) => Object.keys(a)));
  });

  it('AppVM snapshots the template root and owns private and volatile', () => {
    const app = defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'sys-net', template });
    const xml = saved(app, 'appvms', 'sys-net');
    expect(xml).toEqual(APPVM_XML);
    expect(xml.map((a) => Object.keys(a))).toEqual(APPVM_XML.map((a) => Object.keys(a)));
  });

  it('StandaloneVM is like a TemplateVM under appvms/', () => {
    const sa = defaultVolumeLayout({ ...common, vmClass: 'StandaloneVM', name: 's1' });
    expect(sa.map((c) => [c.name, c.vid, c.saveOnStop, c.size])).toEqual([
      ['root', 'appvms/s1/root', true, 10737418240],
      ['private', 'appvms/s1/private', true, 2147483648],
      ['volatile', 'appvms/s1/volatile', false, 10737418240],
      ['kernel', '6.6.1', false, undefined],
    ]);
  });

  it('DispVM snapshots root from the TemplateVM and private from its disposable template', () => {
    const dvm1 = defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'dvm1', template });
    const disp = defaultVolumeLayout({ ...common, vmClass: 'DispVM', name: 'disp123', template: dvm1 });
    const xml = saved(disp, 'appvms', 'disp123');
    expect(xml[0]).toMatchObject({
      name: 'root',
      snap_on_start: 'True',
      save_on_stop: 'False',
      source: 'vm-templates/debian-12/root',
      size: '10737418240',
      revisions_to_keep: '0',
    });
    expect(xml[1]).toMatchObject({
      name: 'private',
      save_on_stop: 'False',
      snap_on_start: 'True',
      size: '2147483648',
      source: 'appvms/dvm1/private',
      vid: 'appvms/disp123/private',
    });
    expect(xml[2]).toMatchObject({ name: 'volatile', size: '12884901888', pool: 'varlibqubes' });
    expect(xml[3]).toEqual(TEMPLATE_XML[3]);
  });

  it('one pool for all moves only writable non-snapshot volumes', () => {
    const app = defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'x5', template, pool: 'fast' });
    expect(app.map((c) => [c.name, c.pool, c.revisionsToKeep])).toEqual([
      ['root', 'varlibqubes', undefined],
      ['private', 'fast', undefined],
      ['volatile', 'fast', undefined],
      ['kernel', 'linux-kernel', undefined],
    ]);
  });

  it('per-volume pools, and snapshots cannot move', () => {
    const app = defaultVolumeLayout({
      ...common,
      vmClass: 'AppVM',
      name: 'x5',
      template,
      pools: { private: 'fast' },
    });
    expect(app.map((c) => c.pool)).toEqual(['varlibqubes', 'fast', 'varlibqubes', 'linux-kernel']);
    expect(() =>
      defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'x6', template, pools: { root: 'fast' } }),
    ).toThrow(QubesException);
    expect(() => defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'x7' })).toThrow(/template/);
  });

  it('no kernel means a kernel volume without vid', () => {
    const t = defaultVolumeLayout({ ...common, kernel: undefined, vmClass: 'TemplateVM', name: 't' });
    expect(
      volumeConfigToXml(t[3] ?? { name: '', pool: '', rw: false, saveOnStop: false, snapOnStart: false }),
    ).toEqual({
      name: 'kernel',
      pool: 'linux-kernel',
      revisions_to_keep: '0',
      rw: 'False',
      save_on_stop: 'False',
      snap_on_start: 'False',
    });
  });

  it('inherits extra template volumes', () => {
    const extra = [
      ...template,
      {
        name: 'data',
        pool: 'varlibqubes',
        vid: 'vm-templates/debian-12/data',
        size: 1024,
        rw: true,
        saveOnStop: true,
        snapOnStart: false,
        revisionsToKeep: 1,
      },
    ];
    const app = defaultVolumeLayout({ ...common, vmClass: 'AppVM', name: 'a', template: extra });
    expect(app[4]).toMatchObject({ name: 'data', vid: 'appvms/a/data', size: 1024, saveOnStop: true });
  });
});

describe('volume config <-> qubes.xml attributes', () => {
  it('round-trips', () => {
    for (const attrs of [...TEMPLATE_XML, ...APPVM_XML]) {
      expect(volumeConfigToXml(volumeConfigFromXml(attrs))).toEqual(attrs);
    }
    const withEph = {
      name: 'volatile',
      pool: 'p',
      vid: 'appvms/a/volatile',
      revisions_to_keep: '0',
      rw: 'True',
      save_on_stop: 'False',
      snap_on_start: 'False',
      ephemeral: 'True',
      size: '5',
    };
    expect(volumeConfigFromXml(withEph).ephemeral).toBe(true);
    expect(volumeConfigToXml(volumeConfigFromXml(withEph))).toEqual(withEph);
  });

  it('accepts any boolean literal and rejects garbage', () => {
    expect(
      volumeConfigFromXml({ name: 'r', pool: 'p', rw: 'yes', save_on_stop: '0', snap_on_start: 'off' }),
    ).toEqual({
      name: 'r',
      pool: 'p',
      rw: true,
      saveOnStop: false,
      snapOnStart: false,
    });
    expect(() => volumeConfigFromXml({ name: 'r', pool: 'p', rw: 'maybe' })).toThrow(/boolean/);
    expect(() => volumeConfigFromXml({ name: 'r', pool: 'p', size: '1e3' })).toThrow(/size/);
    expect(() => volumeConfigFromXml({ pool: 'p' })).toThrow(/name/);
  });
});
