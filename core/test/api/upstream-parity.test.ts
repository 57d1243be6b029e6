import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, rawCall, startDaemon } from '../support/harness.js';
import { appendixA } from './fixture.js';

/**
 * Replies where a differential run against upstream's handler (issue 18) found
 * us answering differently; each expectation is upstream's reply, byte for byte.
 */
let d: TestDaemon;
/** State dirs a test keeps across its own daemon restarts, removed once its daemon stopped. */
const keptDirs: string[] = [];
afterEach(async () => {
  await d?.stop();
  for (const dir of keptDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
const keptDir = async (prefix: string) => {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  keptDirs.push(dir);
  return dir;
};

const text = async (method: string, dest: string, arg = '', payload: Buffer | string = '') =>
  (await d.call(method, dest, arg, payload)).toString('utf8');

describe('1. a disposable inherits from its disposable template', () => {
  it('copies explicit properties, firewall rules, features (not preload bookkeeping) and tags', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'dvm1', 'memory', '600');
    await d.ok('admin.vm.firewall.Set', 'dvm1', '', 'action=accept dsthost=10.1.2.3\naction=drop\n');
    await d.ok('admin.vm.feature.Set', 'dvm1', 'gui-default-secure-copy-sequence', 'Ctrl-Shift-c');
    // Upstream accepts preload-dispvm-max only from a template whose tools announce qrexec and the preload RPCs.
    for (const f of [
      'qrexec',
      'supported-rpc.qubes.WaitForRunningSystem',
      'supported-rpc.qubes.WaitForSession',
    ])
      await d.ok('admin.vm.feature.Set', 'debian-12', f, '1');
    await d.ok('admin.vm.feature.Set', 'dvm1', 'preload-dispvm-max', '0');
    await d.ok('admin.vm.tag.Set', 'dvm1', 'work-docs');
    const rules = await text('admin.vm.firewall.Get', 'dvm1');
    expect(rules).toBe('0\0action=accept dst4=10.1.2.3/32\naction=drop\n');

    const name = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    expect(await text('admin.vm.firewall.Get', name)).toBe(rules);
    expect(await text('admin.vm.property.Get', name, 'memory')).toBe('0\0default=False type=int 600');
    expect(await text('admin.vm.property.Get', name, 'label')).toBe('0\0default=False type=label red');
    expect(await text('admin.vm.feature.Get', name, 'gui-default-secure-copy-sequence')).toBe(
      '0\0Ctrl-Shift-c',
    );
    expect(await text('admin.vm.feature.Get', name, 'preload-dispvm-max')).toBe(
      exc('QubesFeatureNotFoundError', `Feature not set for domain ${name}: preload-dispvm-max`),
    );
    expect(await text('admin.vm.tag.Get', name, 'work-docs')).toBe('0\x001');
    expect(await text('admin.vm.tag.Get', name, 'disp-created-by-dom0')).toBe('0\x001');
  });

  it('admin.vm.Create.DispVM inherits too, keeping what the request set (the label)', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'dvm1', 'vcpus', '3');
    await d.ok('admin.vm.Create.DispVM', 'dom0', 'dvm1', 'name=named-disp label=blue');
    expect(await text('admin.vm.property.Get', 'named-disp', 'vcpus')).toBe('0\0default=False type=int 3');
    expect(await text('admin.vm.property.Get', 'named-disp', 'label')).toBe(
      '0\0default=False type=label blue',
    );
    expect(await text('admin.vm.Create.DispVM', 'dom0', 'work', 'name=other label=blue')).toBe(
      exc(
        'QubesValueError',
        'template for disposable (work) needs to be an AppVM with template_for_dispvms=True',
      ),
    );
  });
});

describe('2. GetDefault of a property whose default is None', () => {
  it('answers the type and an empty value', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.GetDefault', 'debian-12', 'netvm')).toBe('0\0type=vm ');
    expect(await text('admin.vm.property.GetDefault', 'debian-12', 'ip')).toBe('0\0type=str ');
  });
});

describe('3. Reset of a computed or fixed property', () => {
  it('is a no-op, while Set stays refused', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Reset', 'work', 'start_time')).toBe('0\0');
    expect(await text('admin.vm.property.Reset', 'work', 'xid')).toBe('0\0');
    expect(await text('admin.vm.property.Reset', 'dom0', 'name')).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'xid')).toBe('0\0default=True type=int -1');
    expect(await text('admin.vm.property.Set', 'work', 'start_time', '5')).toBe(
      exc('QubesPropertyValueError', "property 'start_time' on AppVM instance cannot be set"),
    );
  });
});

describe('4. lifecycle calls in the wrong state', () => {
  it('Resume of a halted qube is an unpause refusal; repeated Shutdown flags reach the state check', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Resume', 'work')).toBe(
      exc('QubesVMNotPausedError', "Domain is not paused: 'work'"),
    );
    expect(await text('admin.vm.Shutdown', 'work', 'force+force')).toBe(
      exc('QubesVMNotStartedError', "Domain is powered off: 'work'"),
    );
    expect(await text('admin.vm.Shutdown', 'work', 'force+')).toBe(
      exc('ProtocolError', 'Argument must match: force, wait'),
    );
  });

  it('Resume of a paused qube unpauses it; pausing it again is accepted', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Pause', 'work');
    expect(await text('admin.vm.Pause', 'work')).toBe('0\0');
    expect(await text('admin.vm.Resume', 'work')).toBe('0\0');
    expect(await d.ok('admin.vm.List', 'work')).toMatch(/^work class=AppVM state=Running /);
  });
});

describe('5. computed values', () => {
  it('keeps the servicevm feature on network providers and derives the icon from it', async () => {
    d = await appendixA();
    expect(await text('admin.vm.feature.Get', 'sys-net', 'servicevm')).toBe('0\x001');
    expect(await text('admin.vm.property.Get', 'sys-net', 'icon')).toBe(
      '0\0default=True type=str servicevm-red',
    );
    await d.ok('admin.vm.property.Set', 'newvm', 'provides_network', 'True');
    expect(await text('admin.vm.feature.Get', 'newvm', 'servicevm')).toBe('0\x001');
    await d.ok('admin.vm.property.Reset', 'newvm', 'provides_network');
    expect(await text('admin.vm.feature.Get', 'newvm', 'servicevm')).toBe(
      exc('QubesFeatureNotFoundError', 'Feature not set for domain newvm: servicevm'),
    );
    expect(await text('admin.vm.property.Get', 'newvm', 'icon')).toBe('0\0default=True type=str appvm-red');
  });

  it('gives a disposable template (an AppVM) the template icon', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Get', 'dvm1', 'icon')).toBe(
      '0\0default=True type=str templatevm-red',
    );
  });

  it("takes bootmode from the template's appvm_default_bootmode when kernelopts exist for it", async () => {
    d = await appendixA();
    await d.ok('admin.vm.feature.Set', 'debian-12', 'boot-mode.appvm-default', 'quiet');
    expect(await text('admin.vm.property.Get', 'work', 'bootmode')).toBe('0\0default=True type=str default');
    await d.ok('admin.vm.feature.Set', 'debian-12', 'boot-mode.kernelopts.quiet', 'quiet loglevel=0');
    expect(await text('admin.vm.property.Get', 'work', 'bootmode')).toBe('0\0default=True type=str quiet');
    await d.ok('admin.vm.feature.Set', 'work', 'boot-mode.active', 'default');
    expect(await text('admin.vm.property.Get', 'work', 'bootmode')).toBe('0\0default=True type=str default');
  });

  it('gives an HVM qube without qrexec no memory balancing', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'work', 'virt_mode', 'hvm');
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe('0\0default=True type=int 0');
    await d.ok('admin.vm.feature.Set', 'debian-12', 'qrexec', '1');
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe('0\0default=True type=int 4000');
    await d.ok('admin.vm.feature.Set', 'debian-12', 'supported-service.qubes-firewall', '1');
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe('0\0default=True type=int 0');
  });
});

describe('6. class-specific handlers', () => {
  it('removes a RemoteVM', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=far label=red');
    expect(await text('admin.vm.Remove', 'far')).toBe('0\0');
    expect(await text('admin.vm.List', 'far')).toBe(exc('QubesVMNotFoundError', "No such domain: 'far'"));
  });

  it('refuses a disposable of a qube class without template_for_dispvms like one with it off', async () => {
    d = await appendixA();
    expect(await text('admin.vm.CreateDisposable', 'debian-12')).toBe(
      exc(
        'QubesException',
        'Refusing to create disposable out of app qube which has template_for_dispvms=False',
      ),
    );
  });

  it('checks the RPCs a preloaded disposable needs', async () => {
    d = await appendixA();
    expect(await text('admin.vm.CreateDisposable', 'dvm1', 'preload')).toBe(
      exc(
        'QubesValueError',
        "Qube does not support the RPC(s) 'qubes.WaitForRunningSystem, qubes.WaitForSession' but tried to preload, check if template is outdated",
      ),
    );
    await d.ok('admin.vm.feature.Set', 'debian-12', 'supported-rpc.qubes.WaitForRunningSystem', '1');
    expect(await text('admin.vm.CreateDisposable', 'dvm1', 'preload')).toBe(
      exc(
        'QubesValueError',
        "Qube does not support the RPC(s) 'qubes.WaitForSession' but tried to preload, check if template is outdated",
      ),
    );
    await d.ok('admin.vm.feature.Set', 'dvm1', 'supported-rpc.qubes.WaitForSession', '1');
    expect(await text('admin.vm.CreateDisposable', 'dvm1', 'preload')).toBe('0\0');
  });
});

describe('7. parsing and validation', () => {
  it('takes label names (not label-N) at creation and in admin.label.*, label-N in the property', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=x label=label-3')).toBe(
      exc('ProtocolError', 'Creation requested without key: label'),
    );
    expect(await text('admin.label.Get', 'dom0', 'label-3')).toBe(
      exc('QubesLabelNotFoundError', 'Label does not exist: label-3'),
    );
    await d.ok('admin.vm.property.Set', 'work', 'label', 'label-3');
    expect(await text('admin.vm.property.Get', 'work', 'label')).toBe('0\0default=False type=label yellow');
  });

  it('refuses an empty ip and bool literals with whitespace; takes an ip6 with a zone id', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'ip', '')).toBe(
      exc('QubesValueError', 'Failed to parse property value as IPv4Address'),
    );
    expect(await text('admin.vm.property.Set', 'work', 'debug', ' true')).toBe(
      exc('QubesValueError', "Invalid literal for boolean property: ' true'"),
    );
    expect(await text('admin.vm.property.Set', 'work', 'ip6', 'FE80:0:0::1%eth0')).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'ip6')).toBe('0\0default=False type=str fe80::1%eth0');
  });

  it('takes upper-case hex in the last uuid group, and looks the destination up before the header check', async () => {
    d = await appendixA();
    const uuid = (await d.ok('admin.vm.List', 'work')).trim().split('uuid=')[1] ?? '';
    const mixed = `${uuid.slice(0, 24)}${uuid.slice(24).toUpperCase()}`;
    expect(await text('admin.vm.List', `uuid:${mixed}`)).toBe(
      `0\0work class=AppVM state=Halted uuid=${uuid}\n`,
    );
    const header = Buffer.concat([
      Buffer.from('admin.vm.List+\xff dom0 name nosuch', 'latin1'),
      Buffer.from([0]),
    ]);
    expect((await rawCall(d.socket, header)).toString('latin1')).toBe(
      exc('QubesVMNotFoundError', "No such domain: 'nosuch'"),
    );
  });

  it('denied device interfaces: lengths, duplicates and codes checked as upstream does', async () => {
    d = await appendixA();
    expect(await text('admin.vm.device.denied.Add', 'work', '', 'abc')).toBe(
      exc('QubesValueError', "Invalid length of interfaces='abc' (is 3, expected multiple of 7)"),
    );
    expect(await text('admin.vm.device.denied.Add', 'work', '', 'u03****u03****')).toBe(
      exc('ProtocolError', 'Duplicated device interfaces in payload.'),
    );
    expect(await text('admin.vm.device.denied.Add', 'work', '', 'x123456')).toBe(
      exc(
        'QubesPropertyValueError',
        'Interface code list should be in the form chhhhhhchhhhhh...,where c is one of "b", "u", "m", "p", "*" and h is a hexdigit or "*".',
      ),
    );
    await d.ok('admin.vm.device.denied.Add', 'work', '', 'u03****b******');
    expect(await text('admin.vm.device.denied.Remove', 'work', '', 'x123456')).toBe('0\0');
    expect(await text('admin.vm.device.denied.List', 'work')).toBe('0\0b******\nu03****');
  });

  it('notes: unsafe characters become _, invalid UTF-8 is refused with the decoder error', async () => {
    d = await appendixA();
    await d.ok('admin.vm.notes.Set', 'work', '', 'caf\u00e9 \u{1f600}\u202e\tok\n');
    expect(await text('admin.vm.notes.Get', 'work')).toBe('0\0caf\u00e9 __\tok\n');
    expect(await text('admin.vm.notes.Set', 'work', '', Buffer.from([0x61, 0x62, 0xff]))).toBe(
      exc(
        'ProtocolError',
        "Unable to sanitise qube notes: 'utf-8' codec can't decode byte 0xff in position 2: invalid start byte",
      ),
    );
  });
});

describe('8. storage', () => {
  it('resizes volatile up and down, lists no snapshot after CloneTo, refuses ephemeral on the kernel', async () => {
    d = await appendixA();
    await d.ok('admin.vm.volume.Resize', 'work', 'volatile', '21474836480');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'volatile')).toContain('\nsize=21474836480\n');
    await d.ok('admin.vm.volume.Resize', 'work', 'volatile', '1073741824');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'volatile')).toContain('\nsize=1073741824\n');
    const token = await d.ok('admin.vm.volume.CloneFrom', 'work', 'private');
    await d.ok('admin.vm.volume.CloneTo', 'newvm', 'private', token);
    expect(await text('admin.vm.volume.ListSnapshots', 'newvm', 'private')).toBe('0\0');
    expect(await text('admin.vm.volume.Set.ephemeral', 'work', 'kernel', 'False')).toBe(
      exc('QubesValueError', 'LinuxModules does not support setting ephemeral value'),
    );
  });
});

describe('9. messages', () => {
  it("names upstream's reserved names in its words", async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=default label=red')).toBe(
      exc('QubesValueError', "VM name cannot be 'none' nor 'default'"),
    );
  });

  it('reports an unknown template before an unknown pool', async () => {
    d = await appendixA();
    expect(await text('admin.vm.CreateInPool.AppVM', 'dom0', 'nosuch', 'name=x label=red pool=nopool')).toBe(
      exc('QubesVMNotFoundError', "No such domain: 'nosuch'"),
    );
  });
});

describe('10. properties of a running qube', () => {
  it('takes maxmem at the value it has, default or not; refuses another one typed', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    const current = (await text('admin.vm.property.Get', 'work', 'maxmem')).split(' ').pop() ?? '';
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe(`0\0default=True type=int ${current}`);
    expect(await text('admin.vm.property.Set', 'work', 'maxmem', current)).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe(
      `0\0default=False type=int ${current}`,
    );
    expect(await text('admin.vm.property.Set', 'work', 'maxmem', `+${current}`)).toBe('0\0');
    // Upstream's refusal fails to build (its message given as the qube) and answers nothing.
    expect(await text('admin.vm.property.Set', 'work', 'maxmem', '1234')).toBe(
      exc(
        'QubesVMNotHaltedError',
        "Can't change maxmem of VM work, because it isn't Halted and memory hotplug is forbidden",
      ),
    );
    expect(await text('admin.vm.property.Reset', 'work', 'maxmem')).toBe('0\0');
    await d.ok('admin.vm.Kill', 'work');
    await d.ok('admin.vm.property.Set', 'work', 'maxmem', '2000');
    await d.ok('admin.vm.Start', 'work');
    expect(await text('admin.vm.property.Set', 'work', 'maxmem', '02000')).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe('0\0default=False type=int 2000');
  });

  it('changes the others with no state check; only the template waits for a halt', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    for (const [prop, value] of [
      ['memory', '500'],
      ['vcpus', '3'],
      ['kernel', ''],
      ['virt_mode', 'hvm'],
      ['kernelopts', 'x'],
      ['qrexec_timeout', '7'],
    ])
      expect([prop, await text('admin.vm.property.Set', 'work', prop, value)]).toEqual([prop, '0\0']);
    expect(await text('admin.vm.property.Set', 'work', 'template', 'debian-12')).toBe(
      exc('QubesVMNotHaltedError', 'Cannot change template while qube is running'),
    );
  });
});

describe('11. custom-persist features (upstream qubes/ext/custom_persist.py)', () => {
  it('refuses a bad one before it is set, in upstream words; a start fails on one that got in', async () => {
    d = await appendixA();
    expect(await text('admin.vm.feature.Set', 'work', 'custom-persist.home', 'home')).toBe(
      exc('QubesValueError', "invalid value format: 'home'"),
    );
    // Upstream's check runs once the value is set, which stays; ours refuses before anything changes.
    expect(await d.ok('admin.vm.feature.List', 'work')).not.toContain('custom-persist.home');
    await d.ok('admin.vm.feature.Set', 'work', 'custom-persist.home', 'dir:user:user:0700:/home/user');
    expect(await d.ok('admin.vm.feature.Get', 'work', 'custom-persist.home')).toBe(
      'dir:user:user:0700:/home/user',
    );
    // As qubes.xml edited by hand would give it.
    d.daemon.app.domains.byName('work')?.features.init('custom-persist.usr', 'file:root:root:9:/usr');
    expect(await text('admin.vm.Start', 'work')).toBe(
      exc('QubesValueError', "invalid mode option '9' in value 'file:root:root:9:/usr'"),
    );
    expect(d.vmm.calls).not.toContain('start work');
  });
});

describe('12. service features (upstream qubes/ext/services.py)', () => {
  it('refuses a service name QubesDB cannot hold, before it is set', async () => {
    d = await appendixA();
    for (const [name, message] of [
      ['service.', 'Service name cannot be empty'],
      ['service..', 'Service name cannot be "." or ".."'],
      ['service...', 'Service name cannot be "." or ".."'],
      [`service.${'s'.repeat(49)}`, 'Service name must not exceed 48 bytes'],
    ] as const)
      expect(await text('admin.vm.feature.Set', 'work', name, '1')).toBe(exc('QubesValueError', message));
    expect(await d.ok('admin.vm.feature.List', 'work')).toBe('');
    await d.ok('admin.vm.feature.Set', 'work', `service.${'s'.repeat(48)}`, '1');
    await d.ok('admin.vm.feature.Set', 'work', `service.app-dispvm.${'a'.repeat(60)}`, '1');
  });

  it('takes service.meminfo-writer for memory balancing: maxmem 0 or back to its default, the feature gone', async () => {
    d = await appendixA();
    const maxmem = await d.ok('admin.vm.property.Get', 'work', 'maxmem');
    await d.ok('admin.vm.feature.Set', 'work', 'service.meminfo-writer', '');
    expect(await d.ok('admin.vm.property.Get', 'work', 'maxmem')).toBe('default=False type=int 0');
    expect(await d.ok('admin.vm.feature.List', 'work')).toBe('');
    // Any value but the empty one is true, "0" too.
    await d.ok('admin.vm.feature.Set', 'work', 'service.meminfo-writer', '0');
    expect(await d.ok('admin.vm.property.Get', 'work', 'maxmem')).toBe(maxmem);
    expect(await d.ok('admin.vm.feature.List', 'work')).toBe('');
  });
  it("keeps dom0's service features as flag files in the services dir, synced at start", async () => {
    const stateDir = await keptDir('odyssey-dom0-services-');
    const dir = join(stateDir, 'qubes-service');
    const flags = async () => (await readdir(dir).catch(() => [])).sort();
    d = await startDaemon({ stateDir, dom0ServicesDir: dir });
    await d.ok('admin.vm.feature.Set', 'dom0', 'service.on', '1');
    await d.ok('admin.vm.feature.Set', 'dom0', 'service.zero', '0');
    await d.ok('admin.vm.feature.Set', 'dom0', 'service.off', '');
    await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=blue');
    await d.ok('admin.vm.feature.Set', 'work', 'service.theirs', '1');
    await d.ok('admin.vm.feature.Set', 'dom0', 'other', '1');
    expect(await flags()).toEqual(['on', 'zero']);
    await d.ok('admin.vm.feature.Set', 'dom0', 'service.zero', '');
    await d.ok('admin.vm.feature.Remove', 'dom0', 'service.on');
    expect(await flags()).toEqual([]);
    await d.ok('admin.vm.feature.Set', 'dom0', 'service.on', '1');
    await d.stop();
    // Stale files from outside: the feature decides at start; a service dom0 has no feature for stays.
    await rm(join(dir, 'on'));
    await writeFile(join(dir, 'off'), '');
    await writeFile(join(dir, 'stray'), '');
    d = await startDaemon({ stateDir, dom0ServicesDir: dir });
    expect(await flags()).toEqual(['on', 'stray']);
  });

  it('drops a service.meminfo-writer qubes.xml holds (Qubes 4.0), an empty one setting maxmem 0', async () => {
    const stateDir = await keptDir('odyssey-meminfo-');
    d = await startDaemon({ stateDir });
    for (const name of ['off', 'on'])
      await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', `name=${name} label=red`);
    await d.ok('admin.vm.property.Set', 'on', 'maxmem', '3000');
    await d.stop();
    const xml = join(stateDir, 'qubes.xml');
    const before = await readFile(xml, 'utf8');
    let after = before;
    for (const [name, value] of [
      ['off', ''],
      ['on', '1'],
    ] as const) {
      const domain = new RegExp(
        `<domain [^>]*>(?:(?!</domain>)[\\s\\S])*?<property name="name">${name}</property>(?:(?!</domain>)[\\s\\S])*?</domain>`,
      ).exec(after)?.[0];
      expect(domain).toBeDefined();
      const feature = `<feature name="service.meminfo-writer">${value}</feature>`;
      const edited = (domain ?? '')
        .replace(/<features\s*\/>/, '<features></features>')
        .replace('<features>', `<features>${feature}`);
      expect(edited).toContain(feature);
      after = after.replace(domain ?? '', edited);
    }
    await writeFile(xml, after);
    await rm(join(stateDir, 'qubes.xml.journal'), { force: true });
    d = await startDaemon({ stateDir });
    expect(await d.ok('admin.vm.property.Get', 'off', 'maxmem')).toBe('default=False type=int 0');
    expect(await d.ok('admin.vm.property.Get', 'on', 'maxmem')).toBe('default=False type=int 3000');
    expect(await d.ok('admin.vm.feature.List', 'off')).toBe('');
    expect(await d.ok('admin.vm.feature.List', 'on')).toBe('');
  });
});

describe('13. tags of a new qube (upstream qubes/ext/admin.py)', () => {
  it("adds the tags its creator's tag-created-vm-with lists", async () => {
    d = await appendixA();
    await d.ok('admin.vm.feature.Set', 'dom0', 'tag-created-vm-with', ' managed  by-dom0 bad.tag ');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=made label=red');
    expect((await d.ok('admin.vm.tag.List', 'made')).split('\n')).toEqual(
      expect.arrayContaining(['created-by-dom0', 'managed', 'by-dom0']),
    );
    expect(await d.ok('admin.vm.tag.Get', 'made', 'managed')).toBe('1');
    const disp = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    expect(await d.ok('admin.vm.tag.Get', disp, 'by-dom0')).toBe('1');
    // Other qubes, and tags set by hand, take nothing.
    expect(await d.ok('admin.vm.tag.Get', 'work', 'managed')).toBe('0');
  });

  it("sets the guivm its creator's set-created-guivm names (upstream qubes/ext/gui.py)", async () => {
    d = await appendixA();
    await d.ok('admin.vm.feature.Set', 'dom0', 'set-created-guivm', 'work');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=made label=red');
    expect(await d.ok('admin.vm.property.Get', 'made', 'guivm')).toBe('default=False type=vm work');
    expect(await d.ok('admin.vm.tag.Get', 'made', 'guivm-work')).toBe('1');
    const disp = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    expect(await d.ok('admin.vm.property.Get', disp, 'guivm')).toBe('default=False type=vm work');
  });
});
