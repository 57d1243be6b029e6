import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc } from '../support/harness.js';
import { eventStream } from '../support/event-stream.js';
import { appendixA } from './fixture.js';

/**
 * What upstream's extensions (qubes/ext/relay.py, audio.py, gui.py, vm_config.py) make a client
 * see over the admin socket: tags, events and refusals, byte for byte.
 */
let d: TestDaemon;
afterEach(async () => d?.stop());

const text = async (method: string, dest: string, arg = '', payload = ''): Promise<string> =>
  (await d.call(method, dest, arg, payload)).toString('latin1');

/** One admin.Events message as upstream's stream frames it. */
const wire = (vm: string, event: string, ...kv: string[]): string =>
  `1\0${vm}\0${event}\0${kv.map((s) => `${s}\0`).join('')}\0`;

describe("relay.py: a RemoteVM's relayvm- tag", () => {
  it('follows Set and Reset, one tag at a time, and a Set to the same relay takes the tag off and back', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=far label=red');
    expect(await d.ok('admin.vm.tag.List', 'far')).toBe('created-by-dom0\n');
    await d.ok('admin.vm.property.Set', 'far', 'relayvm', 'work');
    expect(await d.ok('admin.vm.tag.List', 'far')).toBe('created-by-dom0\nrelayvm-work\n');
    await d.ok('admin.vm.property.Set', 'far', 'relayvm', 'newvm');
    expect(await d.ok('admin.vm.tag.List', 'far')).toBe('created-by-dom0\nrelayvm-newvm\n');

    const ev = eventStream(d.socket, 'far');
    await ev.until('connection-established');
    await d.ok('admin.vm.property.Set', 'far', 'relayvm', 'newvm');
    const set = wire(
      'far',
      'property-set:relayvm',
      'name',
      'relayvm',
      'newvalue',
      'newvm',
      'oldvalue',
      'newvm',
    );
    await ev.until(set);
    expect(ev.text()).toContain(
      wire('far', 'domain-tag-delete:relayvm-newvm', 'tag', 'relayvm-newvm') +
        wire('far', 'domain-tag-add:relayvm-newvm', 'tag', 'relayvm-newvm') +
        set,
    );
    ev.close();

    await d.ok('admin.vm.property.Reset', 'far', 'relayvm');
    expect(await d.ok('admin.vm.tag.List', 'far')).toBe('created-by-dom0\n');
  });
});

describe("audio.py: a qube's audiovm- tag", () => {
  it('is taken off and put back by a Set to the same audio domain (gui.py keeps its guivm- tag)', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'work', 'audiovm', 'newvm');
    await d.ok('admin.vm.property.Set', 'work', 'guivm', 'newvm');
    const ev = eventStream(d.socket, 'work');
    await ev.until('connection-established');
    await d.ok('admin.vm.property.Set', 'work', 'audiovm', 'newvm');
    await d.ok('admin.vm.property.Set', 'work', 'guivm', 'newvm');
    const guiSet = wire(
      'work',
      'property-set:guivm',
      'name',
      'guivm',
      'newvalue',
      'newvm',
      'oldvalue',
      'newvm',
    );
    await ev.until(guiSet);
    const audioSet = wire(
      'work',
      'property-set:audiovm',
      'name',
      'audiovm',
      'newvalue',
      'newvm',
      'oldvalue',
      'newvm',
    );
    const stream = ev.text();
    expect(stream).toContain(
      wire('work', 'domain-tag-delete:audiovm-newvm', 'tag', 'audiovm-newvm') +
        wire('work', 'domain-tag-add:audiovm-newvm', 'tag', 'audiovm-newvm') +
        audioSet,
    );
    expect(stream).not.toContain('domain-tag-delete:guivm-');
    ev.close();
    expect(await d.ok('admin.vm.tag.List', 'work')).toBe('audiovm-newvm\ncreated-by-dom0\nguivm-newvm\n');
  });
});

describe('gui.py: a keyboard layout Set on a GUI domain', () => {
  it('is announced as a reset on the qubes using it whose layout follows it', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'newvm', 'keyboard_layout', 'de++');
    const ev = eventStream(d.socket, 'dom0');
    await ev.until('connection-established');
    await d.ok('admin.vm.property.Set', 'dom0', 'keyboard_layout', 'fr++');
    const set = wire(
      'dom0',
      'property-set:keyboard_layout',
      'name',
      'keyboard_layout',
      'newvalue',
      'fr++',
      'oldvalue',
      'us++',
    );
    await ev.until(set);
    const reset = (vm: string): string =>
      wire(vm, 'property-reset:keyboard_layout', 'name', 'keyboard_layout', 'oldvalue', 'us++');
    const stream = ev.text();
    // Every qube's guivm is dom0 here, and upstream goes through them by name; newvm has its own layout.
    expect(stream).toContain(reset('debian-12') + reset('dvm1') + reset('sys-net') + reset('work') + set);
    expect(stream).not.toContain(reset('newvm'));
    expect(await d.ok('admin.vm.property.Get', 'work', 'keyboard_layout')).toBe('default=True type=str fr++');

    // Neither a Set to the same layout nor a Reset is announced to the others.
    await d.ok('admin.vm.property.Set', 'dom0', 'keyboard_layout', 'fr++');
    await d.ok('admin.vm.property.Reset', 'dom0', 'keyboard_layout');
    await ev.until(
      wire('dom0', 'property-reset:keyboard_layout', 'name', 'keyboard_layout', 'oldvalue', 'fr++'),
    );
    expect(ev.text().split(reset('work')).length).toBe(2);
    expect(ev.text()).not.toContain(
      wire('work', 'property-reset:keyboard_layout', 'name', 'keyboard_layout', 'oldvalue', 'fr++'),
    );
    ev.close();
  });
});

describe('gui.py and audio.py: a GUI or audio domain in use', () => {
  it('is not shut down while qubes using it run, unless forced', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'work', 'guivm', 'newvm');
    await d.ok('admin.vm.property.Set', 'dvm1', 'audiovm', 'newvm');
    await d.ok('admin.vm.Start', 'newvm');
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Start', 'dvm1');
    expect(await text('admin.vm.Shutdown', 'newvm')).toBe(
      exc('QubesVMError', 'There are running VMs using this VM as GuiVM: work'),
    );
    await d.ok('admin.vm.Shutdown', 'work', 'wait');
    expect(await text('admin.vm.Shutdown', 'newvm')).toBe(
      exc('QubesVMInUseError', 'There are running VMs using this VM as AudioVM: dvm1'),
    );
    await d.ok('admin.vm.Shutdown', 'newvm', 'force+wait');
    expect(await d.ok('admin.vm.CurrentState', 'newvm')).toContain('power_state=Halted');
  });
});

describe('vm_config.py: a vm-config feature', () => {
  it('whose name cannot be a file under /vm-config/ is refused, and nothing is stored', async () => {
    d = await appendixA();
    const refusals: [string, string][] = [
      [`vm-config.${'a'.repeat(53)}`, 'VM config name must not exceed 46 bytes'],
      ['vm-config.', 'Empty config name not allowed'],
      ['vm-config.1st', 'Config name must start with an ASCII letter'],
      ['vm-config.-x', 'Config name must start with an ASCII letter'],
      ['vm-config..', 'Config name must start with an ASCII letter'],
    ];
    for (const [name, message] of refusals) {
      expect(await text('admin.vm.feature.Set', 'work', name, 'v')).toBe(exc('QubesValueError', message));
      expect(await text('admin.vm.feature.Get', 'work', name)).toBe(
        exc('QubesFeatureNotFoundError', `Feature not set for domain work: ${name}`),
      );
    }
    await d.ok('admin.vm.feature.Set', 'work', `vm-config.${'a'.repeat(52)}`, 'v');
    await d.ok('admin.vm.feature.Set', 'work', 'vm-config.Z_1', 'v');
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=far label=red');
    await d.ok('admin.vm.feature.Set', 'far', 'vm-config.1st', 'v');
  });
});

describe('upstream goes through the qubes by name', () => {
  it("in gui.py's and audio.py's fan-out of a new default_guivm and default_audiovm", async () => {
    d = await appendixA();
    const ev = eventStream(d.socket, 'dom0');
    await ev.until('connection-established');
    await d.ok('admin.property.Set', 'dom0', 'default_guivm', 'newvm');
    await d.ok('admin.property.Set', 'dom0', 'default_audiovm', 'newvm');
    await ev.until('1\0\0property-set:default_audiovm\0');
    for (const prop of ['guivm', 'audiovm']) {
      const order = [...ev.text().matchAll(new RegExp(`1\0([^\0]*)\0property-set:${prop}\0`, 'g'))].map(
        (m) => m[1],
      );
      expect(order).toEqual(['debian-12', 'dvm1', 'newvm', 'sys-net', 'work']);
    }
    ev.close();
  });

  it("in the netvm's refusal to shut down, which names the running clients", async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Start', 'newvm');
    expect(await text('admin.vm.Shutdown', 'sys-net')).toBe(
      exc('QubesVMInUseError', 'There are other VMs connected to this VM: newvm, work'),
    );
  });
});
