import { connect } from 'node:net';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request } from '../support/harness.js';
import { appendixA } from './fixture.js';

/**
 * admin.deviceclass.List and admin.vm.device.<class>.*: assignments as
 * upstream keeps them; nothing exposed or attached (no device discovery).
 */
let d: TestDaemon;
beforeEach(async () => {
  d = await appendixA();
});
afterEach(async () => d.stop());

const text = (b: Buffer) => b.toString('latin1');
const call = async (method: string, dest: string, arg = '', payload = '') =>
  text(await d.call(method, dest, arg, payload));

/** What qvm-device sends for `qvm-device pci assign --required work dom0:00_14.0` (with --port, -o). */
const ASSIGN_PAYLOAD =
  "device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work' _no-strict-reset='True'";
const ASSIGNED_LINE =
  "dom0+00_14.0:* device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work' _no-strict-reset='True'\n";

describe('admin.deviceclass.List', () => {
  it('lists the core classes in entry-point order, dom0 only', async () => {
    expect(await call('admin.deviceclass.List', 'dom0')).toBe('0\0pci\nblock\n');
    expect(await call('admin.deviceclass.List', 'work')).toBe(
      exc('ProtocolError', 'expected destination to be AdminVM'),
    );
  });
});

describe('assignments', () => {
  it('assigns, lists sorted, changes mode and unassigns with upstream formats', async () => {
    expect(await call('admin.vm.device.pci.Assigned', 'work')).toBe('0\0');
    expect(await call('admin.vm.device.pci.Assign', 'work', 'dom0+00_14.0', ASSIGN_PAYLOAD)).toBe('0\0');
    await d.ok(
      'admin.vm.device.pci.Assign',
      'work',
      'sys-net+00_02.0+8086+a36d++p0c0330',
      "mode='auto-attach'",
    );
    const second =
      "sys-net+00_02.0:8086:a36d::p0c0330 device_id='8086:a36d::p0c0330' port_id='00_02.0' devclass='pci' backend_domain='sys-net' mode='auto-attach' frontend_domain='work'\n";
    expect(await call('admin.vm.device.pci.Assigned', 'work')).toBe(`0\0${ASSIGNED_LINE}${second}`);
    expect(await call('admin.vm.device.pci.Assigned', 'work', 'sys-net+00_02.0')).toBe(`0\0${second}`);
    expect(await call('admin.vm.device.pci.Assigned', 'work', 'dom0+00_99.0')).toBe('0\0');
    expect(await call('admin.vm.device.block.Assigned', 'work')).toBe('0\0');

    expect(await call('admin.vm.device.pci.Assign', 'work', 'dom0+00_14.0', ASSIGN_PAYLOAD)).toBe(
      exc('DeviceAlreadyAssigned', "'pci device dom0:00_14.0:* already assigned to work'"),
    );

    expect(await call('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_14.0', 'ask-to-attach')).toBe(
      '0\0',
    );
    expect(await call('admin.vm.device.pci.Assigned', 'work', 'dom0+00_14.0')).toBe(
      `0\0${ASSIGNED_LINE.replace("mode='required'", "mode='ask-to-attach'")}`,
    );
    expect(await call('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_14.0', 'manual')).toBe(
      exc('QubesUnrecognizedDeviceAssignmentMode', 'Invalid assignment mode'),
    );
    expect(await call('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_99.0', 'required')).toBe(
      exc('QubesValueError', 'Device dom0:00_99.0:* not assigned to work'),
    );

    expect(await call('admin.vm.device.pci.Unassign', 'work', 'dom0+00_14.0')).toBe('0\0');
    expect(await call('admin.vm.device.pci.Unassign', 'work', 'dom0+00_14.0')).toBe(
      exc('DeviceNotAssigned', "'pci device dom0:00_14.0:* not assigned to work'"),
    );
    expect(await call('admin.vm.device.pci.Assigned', 'work')).toBe(`0\0${second}`);
  });

  it('refuses malformed arguments and payloads as upstream does', async () => {
    const assign = (arg: string, payload: string) => call('admin.vm.device.pci.Assign', 'work', arg, payload);
    expect(await assign('nosuch+00_14.0', "mode='required'")).toBe(
      exc('QubesVMNotFoundError', "No such domain: 'nosuch'"),
    );
    expect(await assign('dom0+00_14.0', "mode='bogus'")).toBe(
      exc('ProtocolError', "'bogus' is not a valid AssignmentMode"),
    );
    expect(await assign('dom0+00_14.0', "devclass='block' mode='required'")).toBe(
      exc('ProtocolError', 'Got block device when expected pci.'),
    );
    expect(await assign('dom0+00_14.0', "backend_domain='sys-net' mode='required'")).toBe(
      exc('ProtocolError', 'Got device exposed by sys-netwhen expected devices from dom0.'),
    );
    expect(await assign('dom0+00_14.0', "port_id='00_15.0' mode='required'")).toBe(
      exc('ProtocolError', 'Got device from port: 00_15.0 when expected port: 00_14.0.'),
    );
    expect(await assign('dom0+00_14.0+8086+a36d', "device_id='1234:5678' mode='required'")).toBe(
      exc('ProtocolError', "Unrecognized device identity '1234:5678' expected '8086:a36d'"),
    );
    expect(await assign('dom0+00_14.0', "foo='x' mode='required'")).toBe(
      exc('ProtocolError', "DeviceAssignment.__init__() got an unexpected keyword argument 'foo'"),
    );
    expect(await assign('dom0+00_14.0', "mode='required' frontend_domain='nosuch'")).toBe(
      exc('ProtocolError', `"No such domain: 'nosuch'"`),
    );
    expect(await assign('dom0+00_14.0', "mode='required' _opt='a\tb'")).toBe(
      exc('ProtocolError', "Invalid chars in property value: {'\\t'}"),
    );
    // A manual assignment and an argument without backend are plain errors upstream: no reply at all.
    expect(await assign('dom0+00_14.0', "mode='manual'")).toBe('');
    expect(await assign('00_14.0', "mode='required'")).toBe('');
    expect(await call('admin.vm.device.pci.Assigned', 'work', 'nobackend')).toBe('');
    expect(await call('admin.vm.device.pci.Assign', 'work', 'dom0+00_14.0')).toBe(
      exc('ProtocolError', 'expected payload'),
    );
    expect(await call('admin.vm.device.pci.Assigned', 'work')).toBe('0\0');
  });

  it('makes virt_mode default to hvm, forbids pvh, disables ballooning and blocks start while required', async () => {
    expect(await d.ok('admin.vm.property.Get', 'work', 'virt_mode')).toBe('default=True type=str pvh');
    await d.ok('admin.vm.device.pci.Assign', 'work', 'dom0+00_14.0', ASSIGN_PAYLOAD);
    expect(await d.ok('admin.vm.property.Get', 'work', 'virt_mode')).toBe('default=True type=str hvm');
    expect(await d.ok('admin.vm.property.Get', 'work', 'maxmem')).toBe('default=True type=int 0');
    expect(await d.ok('admin.vm.property.Get', 'work', 'kernelopts')).toBe('default=True type=str ');
    expect(await call('admin.vm.property.Set', 'work', 'virt_mode', 'pvh')).toBe(
      exc('QubesPropertyValueError', "pvh mode can't be set if pci devices are assigned"),
    );
    expect(await call('admin.vm.Start', 'work')).toBe(
      exc('QubesException', 'Pci device dom0:00_14.0:* not available'),
    );
    expect(await d.ok('admin.vm.List', 'work')).toContain('state=Halted');
    await d.ok('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_14.0', 'auto-attach');
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Kill', 'work');
    await d.ok('admin.vm.device.pci.Unassign', 'work', 'dom0+00_14.0');
    expect(await d.ok('admin.vm.property.Get', 'work', 'virt_mode')).toBe('default=True type=str pvh');
    await d.ok('admin.vm.property.Set', 'work', 'virt_mode', 'pvh');
  });

  it('keeps a domain that provides assigned devices from being removed', async () => {
    await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=usbvm label=red');
    await d.ok('admin.vm.device.block.Assign', 'work', 'usbvm+sda', "mode='auto-attach' _read-only='yes'");
    await d.ok('admin.vm.device.block.Assign', 'newvm', 'usbvm+sdb', "mode='required'");
    expect(await call('admin.vm.Remove', 'usbvm')).toBe(
      exc('QubesVMInUseError', 'VM has devices assigned to other VMs: sda, sdb'),
    );
    await d.ok('admin.vm.device.block.Unassign', 'work', 'usbvm+sda');
    await d.ok('admin.vm.device.block.Unassign', 'newvm', 'usbvm+sdb');
    await d.ok('admin.vm.Remove', 'usbvm');
  });

  it('refuses changes on remote qubes, which have no devices', async () => {
    await d.ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=r1 label=red');
    expect(await call('admin.vm.device.pci.Assigned', 'r1')).toBe('0\0');
    expect(await call('admin.vm.device.pci.Available', 'r1')).toBe('0\0');
    expect(await call('admin.vm.device.pci.Assign', 'r1', 'dom0+00_14.0', "mode='required'")).toBe(
      exc('QubesException', "This qube doesn't support devices"),
    );
    expect(await call('admin.vm.device.block.Unassign', 'r1', 'dom0+sda')).toBe(
      exc('QubesException', "This qube doesn't support devices"),
    );
  });
});

describe('live devices', () => {
  it('exposes and attaches nothing, and says why attaching fails', async () => {
    expect(await call('admin.vm.device.pci.Available', 'dom0')).toBe('0\0');
    expect(await call('admin.vm.device.block.Available', 'sys-net', 'xvdi')).toBe('0\0');
    expect(await call('admin.vm.device.block.Attached', 'work')).toBe('0\0');
    expect(await call('admin.vm.device.block.Attach', 'work', 'sys-net+xvdi', '')).toBe(
      exc('QubesVMNotRunningError', 'VM not running, cannot attach device, do you mean `assign`?'),
    );
    await d.ok('admin.vm.Start', 'work');
    expect(await call('admin.vm.device.block.Attach', 'work', 'sys-net+xvdi', "_read-only='yes'")).toBe(
      exc(
        'ProtocolError',
        'Cannot attach unknown block device sys-net:xvdi:*: odysseyd discovers no devices and backend fake: test double',
      ),
    );
    expect(await call('admin.vm.device.pci.Detach', 'work', 'dom0+00_14.0')).toBe(
      exc('DeviceNotAssigned', "'pci device 00_14.0 not attached to work'"),
    );
    await d.ok('admin.vm.Kill', 'work');
  });
});

describe('device events', () => {
  it('streams assign, mode change and unassign with upstream arguments', async () => {
    let buf = '';
    const sock = connect(d.socket);
    sock.on('connect', () => sock.end(request('admin.Events', 'work')));
    sock.on('data', (c: Buffer) => (buf += c.toString('latin1')));
    // Waits for the stream's own markers: subscribed, then the last event written.
    const holds = (text: string) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (!buf.includes(text)) return;
          sock.off('data', check);
          resolve();
        };
        sock.on('data', check);
        check();
      });
    await holds('connection-established');
    await d.ok('admin.vm.device.pci.Assign', 'work', 'dom0+00_14.0', ASSIGN_PAYLOAD);
    await d.ok('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_14.0', 'required');
    await d.ok('admin.vm.device.pci.Set.assignment', 'work', 'dom0+00_14.0', 'auto-attach');
    await d.ok('admin.vm.device.pci.Unassign', 'work', 'dom0+00_14.0');
    await holds('device-unassign:pci\0device\0dom0:00_14.0:*\0\0');
    sock.destroy();
    const dev = 'device\0dom0:00_14.0:*\0';
    const opts = "options\0{'no-strict-reset': 'True'}\0";
    expect(buf).toBe(
      '1\0\0connection-established\0\0' +
        `1\0work\0device-pre-assign:pci\0${dev}${opts}\0` +
        `1\0work\0device-assign:pci\0${dev}${opts}\0` +
        `1\0work\0device-pre-assign:pci\0${dev}${opts}\0` +
        `1\0work\0device-assignment-changed:pci\0${dev}\0` +
        `1\0work\0device-unassign:pci\0${dev}\0`,
    );
  });
});
