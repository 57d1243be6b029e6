import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

import { Daemon } from '../../src/daemon/daemon.js';
import { App } from '../../src/model/app.js';
import { loadQubesXml, QubesXmlError } from '../../src/persist/qubes-xml.js';
import { StateDirLockedError } from '../../src/persist/state-lock.js';
import type { TestDaemon } from '../support/harness.js';
import { startDaemon } from '../support/harness.js';
import { appendixA } from '../api/fixture.js';
import { noPools } from '../support/pools.js';

const dirs: string[] = [];
let d: TestDaemon | null = null;
afterEach(async () => {
  await d?.stop();
  d = null;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function snapshot(t: TestDaemon): Promise<string> {
  const parts = [
    await t.ok('admin.vm.List', 'dom0'),
    await t.ok('admin.property.GetAll', 'dom0'),
    await t.ok('admin.label.List', 'dom0'),
  ];
  for (const line of (await t.ok('admin.vm.List', 'dom0')).trim().split('\n')) {
    const name = line.split(' ')[0] as string;
    parts.push(await t.ok('admin.vm.property.GetAll', name));
    parts.push(await t.ok('admin.vm.feature.List', name));
    parts.push(await t.ok('admin.vm.tag.List', name));
    if (name !== 'dom0') parts.push(await t.ok('admin.vm.firewall.Get', name));
  }
  return parts.join('\n--\n');
}

describe('qubes.xml', () => {
  it('round-trips the whole state through a restart', async () => {
    d = await appendixA();
    await d.ok('admin.vm.feature.Set', 'work', 'service.cups', '1');
    await d.ok('admin.vm.tag.Set', 'work', 'mytag');
    await d.ok('admin.vm.property.Set', 'work', 'kernelopts', 'a "quoted" <b> & c');
    await d.ok('admin.label.Create', 'dom0', 'mylabel', '0xabcdef');
    await d.ok('admin.vm.property.Set', 'newvm', 'label', 'mylabel');
    await d.ok(
      'admin.vm.firewall.Set',
      'work',
      '',
      'action=accept dsthost=1.2.3.4 proto=tcp dstports=80\naction=drop\n',
    );
    await d.ok('admin.property.Set', 'dom0', 'default_dispvm', 'dvm1');
    const before = await snapshot(d);
    const stateDir = d.stateDir;
    await d.daemon.stop();
    const again = await startDaemon({ stateDir });
    const after = await snapshot(again);
    await again.stop();
    d = null;
    dirs.push(stateDir);
    expect(after).toBe(before);
  });

  it('saves after every write call, atomically, in upstream shape', async () => {
    d = await startDaemon();
    await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=green');
    await d.ok('admin.vm.property.Set', 'sa', 'memory', '777');
    // Saves go to the journal; qubes.xml gets them at a checkpoint.
    await d.daemon.store.flush();
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    expect(xml).toContain('<label id="label-4" color="0x73d216">green</label>');
    expect(xml).toContain('<pool name="varlibqubes"');
    expect(xml).toMatch(
      /<domain id="domain-0" class="AdminVM">\s*<properties>\s*<property name="label">black<\/property>/,
    );
    expect(xml).toMatch(
      /<domain id="domain-1" class="StandaloneVM">[\s\S]*<property name="memory">777<\/property>/,
    );
    expect(xml).toContain('<tag name="created-by-dom0"/>');
    expect(xml).not.toContain('<?xml');
    expect((await readdir(d.stateDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('writes, after any sequence of writes, the document it would build from nothing', async () => {
    d = await appendixA();
    const t = d;
    const writer = t.daemon.store.writer;
    const vms = ['work', 'newvm', 'debian-12', 'dom0'];
    const name = fc.constantFrom('a', 'b', 'service.cups');
    const write = fc.oneof(
      fc.tuple(
        fc.constant('admin.vm.feature.Set'),
        fc.constantFrom(...vms),
        name,
        fc.constantFrom('1', '', 'x&<y'),
      ),
      fc.tuple(fc.constant('admin.vm.feature.Remove'), fc.constantFrom(...vms), name, fc.constant('')),
      fc.tuple(fc.constant('admin.vm.tag.Set'), fc.constantFrom(...vms), name, fc.constant('')),
      fc.tuple(fc.constant('admin.vm.tag.Remove'), fc.constantFrom(...vms), name, fc.constant('')),
      fc.tuple(
        fc.constant('admin.vm.property.Set'),
        fc.constantFrom('work', 'newvm'),
        fc.constantFrom('kernelopts', 'memory', 'label'),
        fc.constantFrom('700', 'red', 'blue'),
      ),
      fc.tuple(
        fc.constant('admin.vm.property.Reset'),
        fc.constantFrom('work', 'newvm'),
        fc.constantFrom('kernelopts', 'memory', 'label', 'kernel'),
        fc.constant(''),
      ),
      fc.tuple(
        fc.constant('admin.vm.property.Set'),
        fc.constant('debian-12'),
        fc.constant('kernel'),
        fc.constantFrom('', '6.6.1'),
      ),
      fc.tuple(
        fc.constant('admin.property.Set'),
        fc.constant('dom0'),
        fc.constant('default_kernel'),
        fc.constantFrom('', '6.6.1'),
      ),
      fc.tuple(
        fc.constant('admin.vm.volume.Resize'),
        fc.constantFrom('debian-12', 'work'),
        fc.constantFrom('root', 'private'),
        fc.constantFrom('11811160064', '12884901888', '3221225472'),
      ),
    );
    let writes = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(write, { minLength: 1, maxLength: 12 }), async (calls) => {
        for (const [method, vm, arg, payload] of calls) {
          // A refused write (a missing feature or tag, an invalid value) changes nothing: the same must hold.
          const reply = await t.call(method, vm, arg, payload);
          if (reply[0] === 0x30) writes++;
          // Each domain's cached element must follow every kind of change, whatever the cache held.
          expect(writer.serialize()).toBe(writer.serializeWithFeatures((v) => v.features.entries()));
        }
      }),
      { numRuns: 40 },
    );
    expect(writes).toBeGreaterThan(40);
  });

  it('loads the reference example', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-ref-'));
    dirs.push(dir);
    await copyFile(new URL('../fixtures/reference-qubes.xml', import.meta.url), join(dir, 'qubes.xml'));
    d = await startDaemon({ stateDir: dir });
    const list = await d.ok('admin.vm.List', 'dom0');
    expect(list).toBe(
      'dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n' +
        'debian-12 class=TemplateVM state=Halted uuid=833500dd-4d8b-4b7c-9a55-0f7e3a6c0e11\n' +
        'disp123 class=DispVM state=Halted uuid=a0f2b1c4-0000-4000-8000-000000000006\n' +
        'dvm1 class=AppVM state=Halted uuid=a0f2b1c4-0000-4000-8000-000000000003\n' +
        'remote1 class=RemoteVM state=Running uuid=a0f2b1c4-0000-4000-8000-000000000007\n' +
        'sys-net class=AppVM state=Halted uuid=a0f2b1c4-0000-4000-8000-000000000002\n' +
        'work class=AppVM state=Halted uuid=a0f2b1c4-0000-4000-8000-000000000004\n',
    );
    expect(await d.ok('admin.vm.property.Get', 'work', 'netvm')).toBe('default=True type=vm sys-net');
    expect(await d.ok('admin.vm.property.Get', 'sys-net', 'netvm')).toBe('default=False type=vm ');
    expect(await d.ok('admin.vm.property.Get', 'work', 'ip')).toBe('default=True type=str 10.137.0.4');
    expect(await d.ok('admin.vm.property.Get', 'disp123', 'ip')).toBe('default=True type=str 10.138.0.123');
    expect(await d.ok('admin.vm.property.Get', 'disp123', 'icon')).toBe('default=True type=str dispvm-red');
    expect(await d.ok('admin.vm.feature.Get', 'work', 'service.cups')).toBe('1');
    expect(await d.ok('admin.vm.tag.List', 'work')).toBe('audiovm-dom0\nguivm-dom0\nmytag\n');
    expect(await d.ok('admin.property.Get', 'dom0', 'default_template')).toBe(
      'default=False type=vm debian-12',
    );
    expect(await d.ok('admin.property.Get', 'dom0', 'default_pool_kernel')).toBe(
      'default=False type=str linux-kernel',
    );
  });

  it('keeps device assignments in upstream shape and loads them back', async () => {
    d = await appendixA();
    await d.ok(
      'admin.vm.device.pci.Assign',
      'work',
      'dom0+00_14.0',
      "mode='required' _no-strict-reset='True'",
    );
    await d.ok('admin.vm.device.block.Assign', 'work', 'sys-net+xvdi+abc', "mode='auto-attach'");
    await d.daemon.store.flush();
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    expect(xml).toContain(
      '      </tags>\n' +
        '      <devices class="pci">\n' +
        '        <device backend-domain="dom0" id="00_14.0" mode="required" identity="*">\n' +
        '          <option name="no-strict-reset">True</option>\n' +
        '        </device>\n' +
        '      </devices>\n' +
        '      <devices class="block">\n' +
        '        <device backend-domain="sys-net" id="xvdi" mode="auto-attach" identity="abc"/>\n' +
        '      </devices>\n' +
        '      <volume-config>\n',
    );
    expect(xml.match(/<devices /g)?.length).toBe(2);
    const before = [
      await d.ok('admin.vm.device.pci.Assigned', 'work'),
      await d.ok('admin.vm.device.block.Assigned', 'work'),
    ];
    const stateDir = d.stateDir;
    await d.daemon.stop();
    d = await startDaemon({ stateDir });
    dirs.push(stateDir);
    expect([
      await d.ok('admin.vm.device.pci.Assigned', 'work'),
      await d.ok('admin.vm.device.block.Assigned', 'work'),
    ]).toEqual(before);
    expect(await d.ok('admin.vm.property.Get', 'work', 'virt_mode')).toBe('default=True type=str hvm');
    await d.ok('admin.vm.device.pci.Unassign', 'work', 'dom0+00_14.0');
    await d.ok('admin.vm.device.block.Unassign', 'work', 'sys-net+xvdi+abc');
    await d.daemon.store.flush();
    expect(await readFile(join(stateDir, 'qubes.xml'), 'utf8')).not.toContain('<devices');
  });

  it('puts the tag of a guivm or audiovm right at load, as upstream: stale ones go only when it was missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-ref-'));
    dirs.push(dir);
    const ref = await readFile(new URL('../fixtures/reference-qubes.xml', import.meta.url), 'utf8');
    const edited = ref
      .replace(
        '<tag name="mytag"/>\n        <tag name="guivm-dom0"/>\n        <tag name="audiovm-dom0"/>',
        '<tag name="mytag"/>\n        <tag name="guivm-sys-old"/>\n        <tag name="audiovm-sys-old"/>',
      )
      .replace(
        '<property name="template">debian-12</property>\n      </properties>\n      <features/>\n      <tags/>',
        '<property name="template">debian-12</property>\n      </properties>\n      <features/>\n' +
          '      <tags><tag name="guivm-dom0"/><tag name="guivm-other"/><tag name="audiovm-other"/></tags>',
      );
    expect(edited).toContain('guivm-sys-old');
    expect(edited).toContain('guivm-other');
    await writeFile(join(dir, 'qubes.xml'), edited);
    d = await startDaemon({ stateDir: dir });
    expect(await d.ok('admin.vm.tag.List', 'work')).toBe('audiovm-dom0\nguivm-dom0\nmytag\n');
    // dvm1 had its guivm's tag (the other guivm- tag stays) but not its audiovm's.
    expect(await d.ok('admin.vm.tag.List', 'dvm1')).toBe('audiovm-dom0\nguivm-dom0\nguivm-other\n');
  });

  it("loads the reference's device example, legacy forms included", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-ref-'));
    dirs.push(dir);
    const ref = await readFile(new URL('../fixtures/reference-qubes.xml', import.meta.url), 'utf8');
    const devices =
      '<devices class="pci"><device backend-domain="dom0" id="0000:00:14.0" mode="required" ' +
      'identity="8086:a36d::p0c0330"><option name="no-strict-reset">True</option></device></devices>' +
      '<devices class="block"><device backend-domain="sys-net" id="xvdi" required="no">' +
      '<option name="identity">abc</option></device>' +
      '<device backend-domain="gone" id="xvdj" mode="required"/></devices>';
    const withDevices = ref.replace(
      '        <tag name="audiovm-dom0"/>\n      </tags>\n    </domain>\n    <domain id="domain-7"',
      `        <tag name="audiovm-dom0"/>\n      </tags>\n${devices}\n    </domain>\n    <domain id="domain-7"`,
    );
    expect(withDevices).not.toBe(ref);
    await writeFile(join(dir, 'qubes.xml'), withDevices);
    d = await startDaemon({ stateDir: dir });
    expect(await d.ok('admin.vm.device.pci.Assigned', 'work')).toBe(
      "dom0+0000:00:14.0:8086:a36d::p0c0330 device_id='8086:a36d::p0c0330' port_id='0000:00:14.0' devclass='pci' " +
        "backend_domain='dom0' mode='required' frontend_domain='work' _no-strict-reset='True'\n",
    );
    expect(await d.ok('admin.vm.device.block.Assigned', 'work')).toBe(
      "sys-net+xvdi:abc device_id='abc' port_id='xvdi' devclass='block' backend_domain='sys-net' " +
        "mode='auto-attach' frontend_domain='work'\n",
    );
  });

  it('refuses a second daemon on the same state dir', async () => {
    d = await startDaemon();
    await expect(
      Daemon.start({
        socketPath: join(d.stateDir, 'other.sock'),
        stateDir: d.stateDir,
        backend: 'kvm',
        log: () => undefined,
      }),
    ).rejects.toBeInstanceOf(StateDirLockedError);
  });

  it('refuses to start on a qubes.xml with an element left open, and leaves the file as it was', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'odyssey-open-element-'));
    dirs.push(stateDir);
    d = await startDaemon({ stateDir });
    for (const name of ['a', 'b'])
      await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', `name=${name} label=red`);
    await d.stop();
    d = null;
    const path = join(stateDir, 'qubes.xml');
    // One domain's <features/> opened but never closed: the lenient parser alone dropped the next domain.
    const broken = (await readFile(path, 'utf8')).replace(
      '<features/>\n      <tags>',
      '<features>\n      <tags>',
    );
    await writeFile(path, broken);
    await expect(startDaemon({ stateDir })).rejects.toThrow(/qubes.xml.*not well-formed/);
    expect(await readFile(path, 'utf8')).toBe(broken);
  });

  it('loads a damaged qubes.xml whole or not at all: never with fewer domains', async () => {
    const reference = await readFile(new URL('../fixtures/reference-qubes.xml', import.meta.url), 'utf8');
    const domainsOf = (xml: string): string[] => {
      const app = new App('/nonexistent', { memoryMiB: 4096, cpus: 2 }, noPools);
      loadQubesXml(app, xml, () => undefined);
      return app.domains.list().map((vm) => vm.name);
    };
    const whole = domainsOf(reference);
    const ends = [...reference.matchAll(/<\/[a-z-]+>|\/>/g)].map((m) => [m.index, m[0].length] as const);
    const damage = fc.oneof(
      // Cut off, as a torn write of a file replaced in place would leave it.
      fc.nat({ max: reference.length - 1 }).map((at) => reference.slice(0, at)),
      // One element left open: its end tag lost, or a self-closing tag that no longer closes.
      fc
        .constantFrom(...ends)
        .map(([at, length]) =>
          length === 2
            ? `${reference.slice(0, at)}>${reference.slice(at + 2)}`
            : reference.slice(0, at) + reference.slice(at + length),
        ),
    );
    fc.assert(
      fc.property(damage, (xml) => {
        let loaded: string[];
        try {
          loaded = domainsOf(xml);
        } catch (e) {
          expect(e).toBeInstanceOf(QubesXmlError);
          return;
        }
        expect(loaded).toEqual(whole);
      }),
      { seed: 20261207, numRuns: 300 },
    );
  });
});
