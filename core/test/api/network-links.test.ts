import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request, startDaemon } from '../support/harness.js';

let d: TestDaemon;
afterEach(async () => d?.stop());

/** tpl, sys-net (provides network, no netvm), sys-firewall behind it, work behind sys-firewall. */
async function chain(): Promise<TestDaemon> {
  d = await startDaemon();
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (const name of ['sys-net', 'sys-firewall', 'work']) {
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=red`);
  }
  await d.ok('admin.vm.property.Set', 'sys-net', 'provides_network', 'True');
  await d.ok('admin.vm.property.Set', 'sys-net', 'netvm', '');
  await d.ok('admin.vm.property.Set', 'sys-firewall', 'provides_network', 'True');
  await d.ok('admin.vm.property.Set', 'sys-firewall', 'netvm', 'sys-net');
  await d.ok('admin.vm.property.Set', 'work', 'netvm', 'sys-firewall');
  return d;
}

const settled = () => d.daemon.lifecycle.network.settled();
const linkCalls = () => d.vmm.calls.filter((c) => c.includes('Link '));
const ip = async (vm: string) => (await d.ok('admin.vm.property.Get', vm, 'ip')).split(' ').pop();

/** The admin.Events stream, to read what was announced. */
function eventsOf(socket: string): { text: () => string; ready: Promise<void>; close: () => void } {
  let buf = '';
  const s = connect(socket);
  s.on('connect', () => s.end(request('admin.Events', 'dom0')));
  const ready = new Promise<void>((resolve) =>
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (buf.includes('connection-established')) resolve();
    }),
  );
  return { text: () => buf, ready, close: () => s.destroy() };
}

describe('network links through the Vmm', () => {
  it('starts the chain netvm first, attaches each client, gives only sys-net the uplink', async () => {
    await chain();
    await d.ok('admin.vm.Start', 'work');
    expect(d.vmm.calls.filter((c) => c.startsWith('start '))).toEqual([
      'start sys-net',
      'start sys-firewall',
      'start work',
    ]);
    expect(linkCalls()).toEqual([
      `attachLink sys-firewall>sys-net ${await ip('sys-firewall')} 00:16:3e:5e:6c:00`,
      `attachLink work>sys-firewall ${await ip('work')} 00:16:3e:5e:6c:00`,
    ]);
    expect(d.vmm.domains.get('sys-net')?.spec.network).toEqual({ uplink: true });
    expect(d.vmm.domains.get('sys-firewall')?.spec.network).toEqual({
      link: {
        frontendDomain: 'sys-firewall',
        backendDomain: 'sys-net',
        mac: '00:16:3e:5e:6c:00',
        ip: await ip('sys-firewall'),
      },
      uplink: false,
    });
    expect(d.vmm.domains.get('tpl')).toBeUndefined();
  });

  it('detaches a stopped client, refuses to stop a netvm in use unless forced, re-attaches on netvm restart', async () => {
    await chain();
    await d.ok('admin.vm.Start', 'work');
    expect((await d.call('admin.vm.Shutdown', 'sys-firewall', 'wait')).toString('latin1')).toBe(
      exc('QubesVMInUseError', 'There are other VMs connected to this VM: work'),
    );
    expect(d.vmm.domains.get('sys-firewall')?.state).toBe('Running');
    expect((await d.call('admin.vm.Shutdown', 'sys-net', 'wait')).toString('latin1')).toBe(
      exc('QubesVMInUseError', 'There are other VMs connected to this VM: sys-firewall'),
    );
    await d.ok('admin.vm.Shutdown', 'sys-firewall', 'force+wait');
    expect(d.vmm.domains.get('sys-firewall')?.state).toBe('Halted');
    d.vmm.calls.length = 0;
    // Its running client gets its side back once it runs again (upstream's on_domain_started_net).
    await d.ok('admin.vm.Start', 'sys-firewall');
    expect(linkCalls()).toEqual([
      `attachLink sys-firewall>sys-net ${await ip('sys-firewall')} 00:16:3e:5e:6c:00`,
      `attachLink work>sys-firewall ${await ip('work')} 00:16:3e:5e:6c:00`,
    ]);
    d.vmm.calls.length = 0;
    await d.ok('admin.vm.Shutdown', 'work', 'wait');
    expect(linkCalls()).toEqual(['detachLink work>sys-firewall']);
    expect(d.vmm.links.has('work>sys-firewall')).toBe(false);
    await d.ok('admin.vm.Shutdown', 'sys-firewall', 'wait');
  });

  it('moves a running qube to another netvm or to none, live, with net-domain-connect', async () => {
    await chain();
    await d.ok('admin.vm.Start', 'work');
    const events = eventsOf(d.socket);
    await events.ready;
    d.vmm.calls.length = 0;
    await d.ok('admin.vm.property.Set', 'work', 'netvm', 'sys-net');
    await settled();
    expect(linkCalls()).toEqual([
      'detachLink work>sys-firewall',
      `attachLink work>sys-net ${await ip('work')} 00:16:3e:5e:6c:00`,
    ]);
    expect([...d.vmm.links].sort()).toEqual(['sys-firewall>sys-net', 'work>sys-net']);
    d.vmm.calls.length = 0;
    await d.ok('admin.vm.property.Set', 'work', 'netvm', '');
    await settled();
    expect(linkCalls()).toEqual(['detachLink work>sys-net']);
    // Back from none: nothing to take out, the new netvm's side to put in.
    d.vmm.calls.length = 0;
    await d.ok('admin.vm.property.Set', 'work', 'netvm', 'sys-firewall');
    await settled();
    expect(linkCalls()).toEqual([`attachLink work>sys-firewall ${await ip('work')} 00:16:3e:5e:6c:00`]);
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other-net label=red');
    await d.ok('admin.vm.property.Set', 'other-net', 'provides_network', 'True');
    expect((await d.call('admin.vm.property.Set', 'work', 'netvm', 'other-net')).toString('latin1')).toBe(
      exc('QubesVMNotStartedError', 'Cannot dynamically attach to stopped qube other-net'),
    );
    expect((await d.ok('admin.vm.property.Get', 'work', 'netvm')).split(' ').pop()).toBe('sys-firewall');
    events.close();
    expect(events.text()).toContain('\0sys-net\0net-domain-connect\0vm\0work\0');
    expect(events.text()).toContain('\0sys-firewall\0net-domain-connect\0vm\0work\0');
  });

  it('changes nothing live for a halted qube', async () => {
    await chain();
    await d.ok('admin.vm.property.Set', 'work', 'netvm', 'sys-net');
    await d.ok('admin.vm.property.Set', 'work', 'netvm', '');
    await settled();
    expect(d.vmm.calls).toEqual([]);
  });
});
