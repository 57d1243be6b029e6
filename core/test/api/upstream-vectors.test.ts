import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, rawCall } from '../support/harness.js';
import { appendixA } from './fixture.js';

/** Request/response pairs captured from upstream qubesd (admin-api-reference Appendix A, §9.1). */
let d: TestDaemon;
beforeAll(async () => {
  d = await appendixA();
});
afterAll(async () => d.stop());

const text = (b: Buffer) => b.toString('latin1');

describe('captured upstream answers', () => {
  const cases: [string, string, string, string, string][] = [
    // method, dest, arg, payload, expected reply
    ['admin.vm.List', 'uuid:1234', '', '', exc('QubesVMInvalidUUIDError', "VM UUID is not valid: '1234'")],
    ['admin.vm.List', 'uuid:', '', '', exc('QubesVMInvalidUUIDError', "VM UUID is not valid: ''")],
    [
      'admin.vm.List',
      '1bad',
      '',
      '',
      exc('QubesValueError', 'VM name cannot start with hyphen, underscore, dot or numbers'),
    ],
    ['admin.vm.List', 'dom0', '', 'unexpected', exc('ProtocolError', 'unexpected payload')],
    ['admin.vm.Foo', 'dom0', '', '', exc('ProtocolError', "no such method: 'admin.vm.Foo'")],
    ['admin.vm.property.Get', 'nosuch', 'name', '', exc('QubesVMNotFoundError', "No such domain: 'nosuch'")],
    ['admin.vm.property.Get', 'work', 'name', '', '0\0default=False type=str work'],
    ['admin.vm.property.Get', 'work', '', '', exc('ProtocolError', 'expected an argument')],
    [
      'admin.vm.property.Get',
      'work',
      'nosuchprop',
      '',
      exc('QubesNoSuchPropertyError', "Invalid property 'nosuchprop' of work"),
    ],
    ['admin.vm.property.Get', 'work', 'vcpus', '', '0\0default=True type=int 2'],
    ['admin.vm.property.Get', 'work', 'xid', '', '0\0default=True type=int -1'],
    ['admin.vm.property.Get', 'newvm', 'label', '', '0\0default=False type=label red'],
    [
      'admin.vm.property.Set',
      'work',
      'memory',
      '',
      exc('QubesValueError', 'Failed to parse property value as int'),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'memory',
      '-1',
      exc('QubesPropertyValueError', 'memory must be positive'),
    ],
    [
      'admin.vm.property.Set',
      'newvm',
      'netvm',
      'newvm',
      exc('QubesValueError', 'The newvm qube does not provide network'),
    ],
    [
      'admin.vm.property.Set',
      'newvm',
      'template',
      'work',
      exc('QubesPropertyValueError', "wrong VM class: domains['work'] is of type AppVM and not TemplateVM"),
    ],
    [
      'admin.vm.property.Set',
      'newvm',
      'default_dispvm',
      'work',
      exc(
        'QubesPropertyValueError',
        "Cannot set invalid property to qube 'newvm', default_dispvm 'work' has template_for_dispvms set to False",
      ),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'ip',
      '300.1.1.1',
      exc('QubesValueError', 'Failed to parse property value as IPv4Address'),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'klass',
      'AppVM',
      exc('QubesPropertyValueError', "property 'klass' on AppVM instance cannot be set"),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'label',
      'nosuch',
      exc('QubesLabelNotFoundError', 'Label does not exist: nosuch'),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'autostart',
      'maybe',
      exc('QubesValueError', "Invalid literal for boolean property: 'maybe'"),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'kernel',
      'a/b',
      exc('QubesPropertyValueError', "Kernel name cannot contain '/'"),
    ],
    [
      'admin.vm.property.Set',
      'work',
      'keyboard_layout',
      'us',
      exc('QubesPropertyValueError', 'invalid number of keyboard layout parameters'),
    ],
    ['admin.vm.property.GetDefault', 'work', 'memory', '', '0\0type=int 400'],
    ['admin.vm.property.GetDefault', 'work', 'template', '', '0\0'],
    [
      'admin.vm.property.Reset',
      'work',
      'template',
      '',
      exc(
        'QubesValueError',
        'Cannot unset template. You can set it to the current default (debian-12) instead',
      ),
    ],
    [
      'admin.vm.feature.Get',
      'newvm',
      'nope',
      '',
      exc('QubesFeatureNotFoundError', 'Feature not set for domain newvm: nope'),
    ],
    [
      'admin.vm.feature.Set',
      'work',
      'bad/name',
      'x',
      exc('ProtocolError', 'feature name contains illegal characters'),
    ],
    [
      'admin.vm.feature.Set',
      'work',
      'f',
      '\x02\x03\xffv',
      exc('ProtocolError', 'Feature value contains non-ASCII characters'),
    ],
    ['admin.vm.tag.Get', 'work', 'mytag', '', '0\x000'],
    [
      'admin.vm.tag.Remove',
      'newvm',
      'nosuchtag',
      '',
      exc('QubesTagNotFoundError', 'Tag not set for domain newvm: nosuchtag'),
    ],
    ['admin.label.List', 'dom0', '', '', '0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n'],
    ['admin.label.Get', 'dom0', 'red', '', '0\x000xcc0000'],
    ['admin.label.Remove', 'dom0', 'red', '', exc('ProtocolError', 'Can only remove custom labels')],
    ['admin.label.List', 'work', '', '', exc('ProtocolError', 'expected destination to be AdminVM')],
    ['admin.vm.firewall.Get', 'dom0', '', '', exc('ProtocolError', 'expected destination to not be AdminVM')],
    [
      'admin.vm.Create.AppVM',
      'dom0',
      'debian-12',
      'name=work label=red',
      exc('QubesVMAlreadyExistsError', 'Qube already exists: work'),
    ],
    [
      'admin.vm.Create.AppVM',
      'dom0',
      'nosuchtpl',
      'name=x1 label=red',
      exc('QubesVMNotFoundError', "No such domain: 'nosuchtpl'"),
    ],
    [
      'admin.vm.Create.AppVM',
      'dom0',
      '',
      'name=x2 label=nosuchlabel',
      exc('ProtocolError', 'Creation requested without key: label'),
    ],
    [
      'admin.vm.Create.TemplateVM',
      'dom0',
      'debian-12',
      'name=x3 label=red',
      exc('ProtocolError', 'TemplateVM cannot be based on template'),
    ],
    [
      'admin.vm.Create.AppVM',
      'dom0',
      'debian-12',
      'name=x4 label=red pool=varlibqubes',
      exc('ProtocolError', "Pool option specified but 'allow_pool' is False"),
    ],
    ['admin.vm.CurrentState', 'work', '', '', '0\0mem=0 mem_static_max=0 cputime=0 power_state=Halted'],
    ['admin.vm.Shutdown', 'newvm', '', '', exc('QubesVMNotStartedError', "Domain is powered off: 'newvm'")],
    ['admin.vm.Shutdown', 'work', 'bogus', '', exc('ProtocolError', 'Argument must match: force, wait')],
    ['admin.vm.Remove', 'dom0', '', '', exc('QubesVMInUseError', "'dom0' cannot be removed")],
    [
      'admin.vm.Remove',
      'debian-12',
      '',
      '',
      exc(
        'QubesVMInUseError',
        "Domain is in use: 'debian-12';  see 'journalctl -u qubesd -e' in dom0 for details",
      ),
    ],
    ['admin.vmclass.List', 'dom0', '', '', '0\0AppVM\nTemplateVM\nStandaloneVM\nAdminVM\nDispVM\nRemoteVM\n'],
  ];
  it.each(cases)('%s+%s %s', async (method, dest, arg, payload, expected) => {
    expect(text(await d.call(method, dest, arg, Buffer.from(payload, 'latin1')))).toBe(expected);
  });

  it('accepts keyword adminvm and no "+" at all', async () => {
    const r1 = await rawCall(d.socket, 'admin.vm.List+ dom0 keyword adminvm\0');
    const r2 = await rawCall(d.socket, 'admin.vm.List dom0 name dom0\0');
    // dom0 first (upstream's AdminVM.__lt__), then by name.
    expect(text(r1)).toMatch(
      /^0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\ndebian-12 class=TemplateVM state=Halted uuid=[0-9a-f-]{36}\ndvm1 /,
    );
    expect(text(r2)).toBe(text(r1));
  });

  it('lists one VM by uuid', async () => {
    const uuid = (await d.ok('admin.vm.property.Get', 'newvm', 'uuid')).split(' ')[2] ?? '';
    expect(text(await d.call('admin.vm.List', `uuid:${uuid}`))).toBe(
      `0\0newvm class=AppVM state=Halted uuid=${uuid}\n`,
    );
  });

  it('answers framing errors with nothing', async () => {
    expect((await rawCall(d.socket, 'admin.vm.List+ dom0 name dom0')).length).toBe(0);
    expect((await rawCall(d.socket, 'admin.vm.List+ dom0 dom0\0')).length).toBe(0);
    expect((await rawCall(d.socket, 'admin.vm.List+ dom0 keyword foo\0')).length).toBe(0);
  });

  it('gives dom0 the captured GetAll', async () => {
    expect(await d.ok('admin.vm.property.GetAll', 'dom0')).toBe(
      'devices_denied default=True type=str \nicon default=True type=str adminvm-black\ninclude_in_backups default=True type=bool True\nkeyboard_layout default=True type=str us++\nklass default=True type=str AdminVM\nlabel default=False type=label black\nmaxmem default=True type=int 4096\nname default=True type=str dom0\nqid default=True type=int 0\nupdateable default=True type=bool True\nuuid default=True type=str 00000000-0000-0000-0000-000000000000\ndefault_dispvm default=True type=vm \n',
    );
  });

  it('escapes multi-line values in GetAll', async () => {
    await d.ok('admin.vm.property.Set', 'newvm', 'kernelopts', 'opt1\nopt2\\x');
    const all = await d.ok('admin.vm.property.GetAll', 'newvm');
    expect(all).toContain('kernelopts default=False type=str opt1\\nopt2\\\\x\n');
    await d.ok('admin.vm.property.Reset', 'newvm', 'kernelopts');
  });

  it('sets virt_mode lowercased, netvm to none, label by index', async () => {
    await d.ok('admin.vm.property.Set', 'work', 'virt_mode', 'HVM');
    expect(await d.ok('admin.vm.property.Get', 'work', 'virt_mode')).toBe('default=False type=str hvm');
    await d.ok('admin.vm.property.Set', 'work', 'netvm', '');
    expect(await d.ok('admin.vm.property.Get', 'work', 'netvm')).toBe('default=False type=vm ');
    await d.ok('admin.vm.property.Set', 'work', 'label', '3');
    expect(await d.ok('admin.vm.property.Get', 'work', 'label')).toBe('default=False type=label yellow');
  });

  it('refuses a default_netvm that makes a loop', async () => {
    // sys-net cannot follow a default that is itself (its Reset is refused as a loop), so the default goes first.
    expect(text(await d.call('admin.vm.property.Reset', 'sys-net', 'netvm'))).toBe(
      exc('QubesValueError', 'Loops in network are unsupported'),
    );
    await d.ok('admin.property.Set', 'dom0', 'default_netvm', '');
    await d.ok('admin.vm.property.Reset', 'sys-net', 'netvm');
    try {
      expect(text(await d.call('admin.property.Set', 'dom0', 'default_netvm', 'sys-net'))).toBe(
        exc('QubesPropertyValueError', "Network loop on 'sys-net'"),
      );
    } finally {
      await d.ok('admin.vm.property.Set', 'sys-net', 'netvm', '');
      await d.ok('admin.property.Set', 'dom0', 'default_netvm', 'sys-net');
    }
  });

  it('lists tags with created-by', async () => {
    await d.ok('admin.vm.tag.Set', 'newvm', 'mytag');
    expect(await d.ok('admin.vm.tag.List', 'newvm')).toBe(
      'audiovm-dom0\ncreated-by-dom0\nguivm-dom0\nmytag\n',
    );
  });

  it('creates, indexes and refuses labels', async () => {
    await d.ok('admin.label.Create', 'dom0', 'mylabel', '0x123456');
    expect(await d.ok('admin.label.Index', 'dom0', 'mylabel')).toBe('9');
    expect(await d.ok('admin.label.Get', 'dom0', 'mylabel')).toBe('0x123456');
    expect(text(await d.call('admin.label.Create', 'dom0', 'mylabel', '0x123456'))).toBe(
      exc('QubesLabelInUseError', "Label is still in use: 'mylabel'"),
    );
  });

  it('help of netvm', async () => {
    expect((await d.ok('admin.vm.property.Help', 'work', 'netvm')).length).toBeGreaterThan(10);
  });

  it('device denied list has no trailing newline', async () => {
    await d.ok('admin.vm.device.denied.Add', 'work', '', 'u******');
    expect(await d.ok('admin.vm.device.denied.List', 'work')).toBe('u******');
    await d.ok('admin.vm.device.denied.Add', 'work', '', 'b******p012345');
    expect(await d.ok('admin.vm.device.denied.List', 'work')).toBe('b******\np012345\nu******');
  });

  it('global property list and GetAll in upstream order', async () => {
    expect(await d.ok('admin.property.List', 'dom0')).toBe(
      'check_updates_vm\nclockvm\ndefault_audiovm\ndefault_dispvm\ndefault_guivm\ndefault_kernel\ndefault_netvm\ndefault_pool\ndefault_pool_kernel\ndefault_pool_private\ndefault_pool_root\ndefault_pool_volatile\ndefault_qrexec_timeout\ndefault_shutdown_timeout\ndefault_template\nmanagement_dispvm\nmaxmem\nno_cpus\nstats_interval\nupdatevm\n',
    );
    const all = await d.ok('admin.property.GetAll', 'dom0');
    expect(all).toContain(
      'check_updates_vm default=True type=bool True\nclockvm default=True type=vm \ndefault_audiovm default=True type=vm dom0\ndefault_dispvm default=True type=vm \ndefault_guivm default=True type=vm dom0\ndefault_kernel default=False type=str 6.6.1\ndefault_netvm default=False type=vm sys-net\ndefault_pool default=True type=str varlibqubes\n',
    );
  });
});
