import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc } from '../support/harness.js';
import { appendixA } from './fixture.js';

/**
 * Replies where scripts/upstream-differential.sh found us answering differently from
 * upstream's handler; each expectation is upstream's reply, byte for byte, unless the
 * README's table of deliberate deviations says otherwise.
 */
let d: TestDaemon;
afterEach(async () => d?.stop());

const text = async (method: string, dest: string, arg = '', payload: Buffer | string = '') =>
  (await d.call(method, dest, arg, payload)).toString('utf8');

describe('admin.vm.Create.*', () => {
  it('checks the template argument before the payload, which may be empty', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.TemplateVM', 'dom0', 'sys-net')).toBe(
      exc('ProtocolError', 'TemplateVM cannot be based on template'),
    );
    // Upstream fails to split the empty parameter (a ValueError, an empty reply); ours is typed.
    expect(await text('admin.vm.Create.AppVM', 'dom0', 'debian-12')).toBe(
      exc('ProtocolError', "Invalid parameter: ''"),
    );
  });

  it('checks Create.AdminVM like any creation before refusing it', async () => {
    d = await appendixA();
    expect(await text('admin.vm.Create.AdminVM', 'dom0', '', 'name=default label=red')).toBe(
      exc('QubesValueError', "VM name cannot be 'none' nor 'default'"),
    );
    expect(await text('admin.vm.CreateInPool.AdminVM', 'dom0', 'debian-12', 'name=x label=red')).toBe(
      exc('ProtocolError', 'AdminVM cannot be based on template'),
    );
    expect(await text('admin.vm.Create.AdminVM', 'dom0', '', 'name=x label=red')).toBe(
      exc('QubesPropertyValueError', "property 'qid' on AdminVM instance cannot be set"),
    );
  });

  it("names an unknown pool in upstream's words", async () => {
    d = await appendixA();
    expect(await text('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=x label=red pool=nopool')).toBe(
      exc('QubesException', 'Unknown storage pool nopool'),
    );
    expect(await text('admin.vm.List', 'dom0')).not.toContain('\nx class=');
  });
});

describe('check_updates_vm False', () => {
  it("turns the updates check off in every qube created then, as upstream's QubesVM constructor does", async () => {
    d = await appendixA();
    await d.ok('admin.property.Set', 'dom0', 'check_updates_vm', 'False');
    await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=alone label=red');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=app label=red');
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=far label=red');
    const disp = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    for (const vm of ['alone', 'app', disp]) {
      expect(await d.ok('admin.vm.feature.List', vm)).toMatch(/^check-updates\n/);
      expect(await d.ok('admin.vm.feature.Get', vm, 'check-updates')).toBe('');
    }
    // Qubes made before, and a RemoteVM (no QubesVM), keep what they had.
    expect(await text('admin.vm.feature.Get', 'work', 'check-updates')).toMatch(
      /^2\0QubesFeatureNotFoundError\0/,
    );
    expect(await d.ok('admin.vm.feature.List', 'far')).toBe('');
    await d.ok('admin.property.Set', 'dom0', 'check_updates_vm', 'True');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=later label=red');
    expect(await d.ok('admin.vm.feature.List', 'later')).toBe('');
  });
});

describe('kernelopts default', () => {
  it('is empty without a kernel, whatever the template has; with PCI devices dom0 suspend-s0ix adds its option', async () => {
    d = await appendixA();
    expect(await d.ok('admin.vm.property.Get', 'work', 'kernelopts')).toBe(
      'default=True type=str swiotlb=2048',
    );
    const kernel = (await d.ok('admin.property.Get', 'dom0', 'default_kernel')).split(' ')[2] ?? '';
    await d.ok('admin.property.Set', 'dom0', 'default_kernel', '');
    expect(await d.ok('admin.vm.property.Get', 'work', 'kernelopts')).toBe('default=True type=str ');
    await d.ok('admin.property.Set', 'dom0', 'default_kernel', kernel);
    await d.ok('admin.vm.feature.Set', 'dom0', 'suspend-s0ix', '1');
    await d.ok(
      'admin.vm.device.pci.Assign',
      'work',
      'dom0+00_14.0',
      "device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'",
    );
    expect(await d.ok('admin.vm.property.Get', 'work', 'kernelopts')).toBe(
      'default=True type=str  qubes_exp_pm_use_suspend=1',
    );
  });
});

describe('argument and payload checks', () => {
  it("writes number names as Python's capitalize() and takes the same boolean payloads everywhere", async () => {
    d = await appendixA();
    expect(await text('admin.vm.volume.Resize', 'work', 'private', 'abc')).toBe(
      exc('ProtocolError', 'Volume size contains non ASCII digits'),
    );
    expect(await text('admin.pool.Set.revisions_to_keep', 'dom0', 'varlibqubes', 'x')).toBe(
      exc('ProtocolError', 'Revisions to keep contains non ASCII digits'),
    );
    expect(await text('admin.pool.Set.ephemeral_volatile', 'dom0', 'varlibqubes', 'x')).toBe(
      exc('ProtocolError', 'Payload is not boolean ASCII'),
    );
    expect(await text('admin.vm.volume.Clear', 'work', 'root')).toBe(
      exc('StoragePoolException', 'Can not import into save_on_stop=False volume appvms/work/root'),
    );
  });
});

describe('RemoteVM', () => {
  it('refuses start, suspend, shutdown and kill as its class does upstream', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=far label=red');
    expect(await text('admin.vm.Start', 'far')).toBe(
      exc('QubesVMNotHaltedError', 'Cannot start a RemoteVM.'),
    );
    expect(await text('admin.vm.Suspend', 'far')).toBe(exc('QubesVMError', 'Cannot suspend a RemoteVM.'));
    // Upstream's handler passes flags its RemoteVM.shutdown() does not take (an empty reply); ours is typed.
    expect(await text('admin.vm.Shutdown', 'far', 'force')).toBe(
      exc('QubesVMError', 'Cannot shutdown a RemoteVM.'),
    );
    expect(await text('admin.vm.Kill', 'far')).toBe(exc('QubesVMError', 'Cannot kill a RemoteVM.'));
  });
});

describe('dom0', () => {
  it('keeps its icon when its label is reset', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Reset', 'dom0', 'label');
    expect(await text('admin.vm.property.Get', 'dom0', 'icon')).toBe(
      '0\0default=True type=str adminvm-black',
    );
    expect(await text('admin.vm.property.GetAll', 'dom0')).toContain(
      '\nicon default=True type=str adminvm-black\n',
    );
  });
});

describe('GetDefault of a property without a default', () => {
  it('answers an empty body, as for a property whose default is None it answers the type', async () => {
    d = await appendixA();
    expect(await text('admin.property.GetDefault', 'dom0', 'default_template')).toBe('0\0');
    expect(await text('admin.property.GetDefault', 'dom0', 'default_kernel')).toBe('0\0');
    expect(await text('admin.property.GetDefault', 'dom0', 'default_netvm')).toBe('0\0type=vm ');
    for (const p of ['label', 'name', 'qid', 'uuid', 'template'])
      expect([p, await text('admin.vm.property.GetDefault', 'work', p)]).toEqual([p, '0\0']);
    expect(await text('admin.vm.property.GetDefault', 'dom0', 'label')).toBe('0\0');
    expect(await text('admin.vm.property.GetDefault', 'dom0', 'name')).toBe('0\0type=str dom0');
  });
});

describe('creation in a file pool', () => {
  it('refuses a volume without a size (a kernel volume there) and removes the half-made qube', async () => {
    d = await appendixA();
    await d.ok('admin.property.Set', 'dom0', 'default_pool_kernel', 'varlibqubes');
    const reply = await text('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=alone label=red');
    expect(reply).toBe(exc('StoragePoolException', 'Volume size must be > 0: 6.6.1'));
    expect(await text('admin.vm.List', 'alone')).toBe(exc('QubesVMNotFoundError', "No such domain: 'alone'"));
    await d.ok('admin.property.Set', 'dom0', 'default_pool_kernel', 'linux-kernel');
    await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=alone label=red');
  });
});

describe('preload features', () => {
  it('validates preload-dispvm-max and -delay on a disposable template, and the global one on dom0', async () => {
    d = await appendixA();
    const set = (vm: string, f: string, v: string) => text('admin.vm.feature.Set', vm, f, v);
    expect(await set('dvm1', 'preload-dispvm-max', '1')).toBe(
      exc('QubesValueError', 'Qube does not support qrexec'),
    );
    await d.ok('admin.vm.feature.Set', 'debian-12', 'qrexec', '1');
    expect(await set('dvm1', 'preload-dispvm-max', '1')).toBe(
      exc(
        'QubesValueError',
        "Qube does not support the RPC(s) 'qubes.WaitForRunningSystem, qubes.WaitForSession'",
      ),
    );
    await d.ok('admin.vm.feature.Set', 'debian-12', 'supported-rpc.qubes.WaitForRunningSystem', '1');
    await d.ok('admin.vm.feature.Set', 'debian-12', 'supported-rpc.qubes.WaitForSession', '1');
    expect(await set('dvm1', 'preload-dispvm-max', 'x')).toBe(
      exc('QubesValueError', 'Invalid preload-dispvm-max value: not a digit'),
    );
    expect(await set('dvm1', 'preload-dispvm-max', '')).toBe('0\0');
    expect(await set('dvm1', 'preload-dispvm-delay', 'soon')).toBe(
      exc('QubesValueError', 'Invalid preload-dispvm-delay value: not an integer or float'),
    );
    expect(await set('dvm1', 'preload-dispvm-delay', ' 1.5e1 ')).toBe('0\0');
    // dom0's value is checked by the default disposable template, when there is one.
    expect(await set('dom0', 'preload-dispvm-max', 'x')).toBe('0\0');
    await d.ok('admin.property.Set', 'dom0', 'default_dispvm', 'dvm1');
    expect(await set('dom0', 'preload-dispvm-max', 'y')).toBe(
      exc('QubesValueError', 'Invalid preload-dispvm-max value: not a digit'),
    );
    // A template is no disposable template: nothing to check there.
    expect(await set('debian-12', 'preload-dispvm-max', 'x')).toBe('0\0');
  });
});

describe('CreateInPool', () => {
  it("refuses to move a snapshot volume away from its origin's pool in upstream's words", async () => {
    d = await appendixA();
    await d.ok('admin.pool.Add', 'dom0', 'file', `name=other\ndir_path=${d.stateDir}/other\n`);
    expect(await text('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=x label=red pool:root=other')).toBe(
      exc(
        'QubesException',
        'Snapshot volume root must be in the same pool as its origin (root volume of template),' +
          'cannot move to pool other ',
      ),
    );
  });
});

describe('device attach', () => {
  it('checks the denied interfaces (which need a known device) before the state', async () => {
    d = await appendixA();
    expect(await text('admin.vm.device.pci.Attach', 'work', 'dom0+00_1f.0')).toBe(
      exc('QubesVMNotRunningError', 'VM not running, cannot attach device, do you mean `assign`?'),
    );
    await d.ok('admin.vm.device.denied.Add', 'work', '', 'u******');
    expect(await text('admin.vm.device.pci.Attach', 'work', 'dom0+00_1f.0')).toBe(
      exc('PermissionDenied', 'Could not load interfaces to verify against denied list'),
    );
  });
});

describe('property.Set of a property that cannot be set', () => {
  it('parses the value by the property type first', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'uuid', 'nosuch')).toBe(
      exc('QubesValueError', 'Failed to parse property value as UUID'),
    );
    // A typed property parses control characters too (differential seed 161); dom0's untyped uuid
    // and a str property refuse them.
    for (const [dest, name, value, message] of [
      ['work', 'uuid', '\x00\x01', 'Failed to parse property value as UUID'],
      ['work', 'ip', '10.0.0.1\x01', 'Failed to parse property value as IPv4Address'],
      ['work', 'ip6', '\x7f', 'Failed to parse property value as IPv6Address'],
      ['dom0', 'uuid', '\x00\x01', 'Invalid characters in property value'],
      ['work', 'kernelopts', 'a\x01', 'Invalid characters in property value'],
    ] as const) {
      expect(await text('admin.vm.property.Set', dest, name, value)).toBe(exc('QubesValueError', message));
    }
    expect(
      await text('admin.vm.property.Set', 'work', 'uuid', '{00000000-0000-0000-0000-00000000ABCD}'),
    ).toBe(exc('QubesPropertyValueError', "property 'uuid' is write-once and already set"));
    expect(await text('admin.vm.property.Set', 'work', 'updateable', '')).toBe(
      exc('QubesValueError', "Invalid literal for boolean property: ''"),
    );
    expect(await text('admin.vm.property.Set', 'work', 'xid', 'a b')).toBe(
      exc('QubesValueError', 'Failed to parse property value as int'),
    );
    expect(await text('admin.vm.property.Set', 'work', 'updateable', 'True')).toBe(
      exc('QubesPropertyValueError', "property 'updateable' on AppVM instance cannot be set"),
    );
  });

  it("refuses dom0's uuid whatever the value: upstream's AdminVM declares it without a type (seed 125)", async () => {
    d = await appendixA();
    for (const value of ['default', '00000000-0000-0000-0000-000000000000'])
      expect(await text('admin.vm.property.Set', 'dom0', 'uuid', value)).toBe(
        exc('QubesPropertyValueError', "property 'uuid' on AdminVM instance cannot be set"),
      );
    // Its qid is declared an int: the value is parsed first.
    expect(await text('admin.vm.property.Set', 'dom0', 'qid', 'x')).toBe(
      exc('QubesValueError', 'Failed to parse property value as int'),
    );
  });
});

describe('netvm Reset', () => {
  it('checks the default netvm it falls back to', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'work', 'netvm', '');
    await d.ok('admin.vm.property.Set', 'newvm', 'netvm', '');
    await d.ok('admin.vm.property.Set', 'dvm1', 'netvm', '');
    await d.ok('admin.vm.property.Set', 'sys-net', 'provides_network', 'False');
    expect(await text('admin.vm.property.Reset', 'work', 'netvm')).toBe(
      exc('QubesValueError', 'The sys-net qube does not provide network'),
    );
    expect(await text('admin.vm.property.Get', 'work', 'netvm')).toBe('0\0default=False type=vm ');
  });
});

describe('device attach to dom0', () => {
  it('is not refused as to a halted qube', async () => {
    d = await appendixA();
    const reply = await text('admin.vm.device.block.Attach', 'dom0', 'sys-net+xvdi');
    expect(reply.startsWith('2\0ProtocolError\0\0Cannot attach unknown block device')).toBe(true);
  });
});

describe('default_netvm', () => {
  it('refuses a qube that follows the default netvm itself, a template included', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'debian-12', 'provides_network', 'True');
    expect(await text('admin.property.Set', 'dom0', 'default_netvm', 'debian-12')).toBe(
      exc('QubesPropertyValueError', "Network loop on 'debian-12'"),
    );
    await d.ok('admin.vm.property.Set', 'debian-12', 'netvm', '');
    await d.ok('admin.property.Set', 'dom0', 'default_netvm', 'debian-12');
  });

  it('refuses dom0, which upstream takes and then fails to hand to the qubes that follow it (an empty reply)', async () => {
    d = await appendixA();
    const before = await d.ok('admin.property.Get', 'dom0', 'default_netvm');
    expect(await text('admin.property.Set', 'dom0', 'default_netvm', 'dom0')).toBe(
      exc('QubesValueError', 'The dom0 qube does not provide network'),
    );
    expect(await d.ok('admin.property.Get', 'dom0', 'default_netvm')).toBe(before);
  });

  it('refuses a VM-valued property with non-ASCII bytes without a message, as VMProperty does', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'guivm', 'caf\u00e9')).toBe(
      exc('QubesValueError', ''),
    );
  });
});

describe('firewall.Set', () => {
  it('refuses non-ASCII rules as a protocol error and splits lines as Python does', async () => {
    d = await appendixA();
    expect(await text('admin.vm.firewall.Set', 'work', '', 'action=accept comment=caf\u00e9\n')).toBe(
      exc('ProtocolError', 'Rules contains non-ASCII characters'),
    );
    await d.ok('admin.vm.firewall.Set', 'work', '', 'action=accept proto=tcp\r\naction=drop\r');
    expect(await text('admin.vm.firewall.Get', 'work')).toBe('0\0action=accept proto=tcp\naction=drop\n');
  });
});

describe('volume size in a file pool', () => {
  it("reports a snapshot volume's size as its origin's current size", async () => {
    d = await appendixA();
    await d.ok('admin.vm.volume.Resize', 'debian-12', 'root', '21474836480');
    expect(await text('admin.vm.volume.Info', 'work', 'root')).toContain('\nsize=21474836480\n');
    // An origin of size 0 cannot be snapshot there (upstream's file driver checks every volume's size).
    await d.ok('admin.vm.volume.Resize', 'debian-12', 'root', '0');
    expect(await text('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=x label=red')).toBe(
      exc('StoragePoolException', 'Volume size must be > 0: appvms/x/root'),
    );
  });
});

describe('CreateDisposable', () => {
  it('works from a disposable template whose label was reset', async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Reset', 'dvm1', 'label');
    const name = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    expect(name).toMatch(/^disp\d+$/);
    expect(await text('admin.vm.List', name)).toContain(`${name} class=DispVM state=Halted`);
  });
});

describe('template_for_dispvms False', () => {
  it("is refused in upstream's words while the system or a qube has the qube as its disposable template", async () => {
    d = await appendixA();
    const inUse = (by: string) => `Cannot change template_for_dispvms to False while it is ${by}`;
    await d.ok('admin.property.Set', 'dom0', 'management_dispvm', 'dvm1');
    expect(await text('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'False')).toBe(
      exc(
        'QubesVMInUseError',
        inUse('in use by the system by any of these properties: default_dispvm, management_dispvm'),
      ),
    );
    await d.ok('admin.property.Reset', 'dom0', 'management_dispvm');
    await d.ok('admin.vm.property.Set', 'work', 'management_dispvm', 'dvm1');
    const byQube = exc(
      'QubesVMInUseError',
      inUse(
        'the disposable template of a qube by any of these properties: default_dispvm, management_dispvm, template',
      ),
    );
    expect(await text('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'False')).toBe(byQube);
    expect(await text('admin.vm.property.Reset', 'dvm1', 'template_for_dispvms')).toBe(byQube);
    await d.ok('admin.vm.property.Reset', 'work', 'management_dispvm');
    await d.ok('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'False');
    // Already off: nothing to guard.
    await d.ok('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'False');
  });
});

describe('a qube whose label was reset', () => {
  it('does not break label.Remove or its own icon and GetAll, which read its label', async () => {
    d = await appendixA();
    await d.ok('admin.label.Create', 'dom0', 'label-1', '0xABCDEF');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=gen-4 label=label-1');
    await d.ok('admin.vm.property.Reset', 'work', 'label');
    // Upstream's repr of the Label object, its colour as a loaded label has it (seed 120).
    expect(await text('admin.label.Remove', 'dom0', 'label-1')).toBe(
      exc('QubesLabelInUseError', "Label is still in use: Label(9, '0xABCDEF', 'label-1')"),
    );
    expect(await d.ok('admin.vm.property.Get', 'work', 'icon')).toBe('default=True type=str ');
    expect(await d.ok('admin.vm.property.GetAll', 'work')).toContain('\nlabel default=True type=label \n');
    await d.ok('admin.vm.property.Set', 'gen-4', 'label', 'red');
    await d.ok('admin.label.Remove', 'dom0', 'label-1');
  });
});

describe('a Reset of default_audiovm that changes nothing (seed 121)', () => {
  it('is not fanned out to the qubes following it: a tag removed by hand stays removed, as upstream', async () => {
    d = await appendixA();
    await d.ok('admin.vm.tag.Remove', 'work', 'audiovm-dom0');
    await d.ok('admin.property.Reset', 'dom0', 'default_audiovm');
    expect(await d.ok('admin.vm.tag.Get', 'work', 'audiovm-dom0')).toBe('0');
    // A Set is fanned out, whatever the value, as upstream's handler runs on every set.
    await d.ok('admin.property.Set', 'dom0', 'default_audiovm', 'dom0');
    expect(await d.ok('admin.vm.tag.Get', 'work', 'audiovm-dom0')).toBe('1');
  });
});

describe('a creation whose kernel volume cannot be made (seed 122)', () => {
  it('leaves no volume of the qube in the pool: the kernel volume that failed was still listed', async () => {
    d = await appendixA();
    const before = await d.ok('admin.pool.volume.List', 'dom0', 'varlibqubes');
    await d.ok('admin.property.Set', 'dom0', 'default_pool_kernel', 'varlibqubes');
    expect(await text('admin.vm.Create.TemplateVM', 'dom0', '', 'name=gen-1 label=blue')).toBe(
      exc('StoragePoolException', 'Volume size must be > 0: 6.6.1'),
    );
    expect(await d.ok('admin.pool.volume.List', 'dom0', 'varlibqubes')).toBe(before);
    expect(await d.ok('admin.vm.List', 'dom0')).not.toContain('gen-1');
  });
});
