/**
 * What makes a domain started, beyond the hypervisor running it: dom0 serves its QubesDB, then
 * awaits its qrexec agent (upstream's order: the guest's daemons read the database while booting,
 * before its agent answers). The guest here is played over the socket vchan transport.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { GuestQubesDb } from '@odyssey/qubesdb';
import { exchangeHello, MessageReader, VCHAN_BASE_PORT } from '@odyssey/qrexec';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { FakeVmm } from '../support/fake-vmm.js';
import { startDaemon, type TestDaemon } from '../support/harness.js';

let dir: string;
let d: TestDaemon;
let vmm: FakeVmm;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-after-start-'));
  vmm = new FakeVmm();
  d = await startDaemon({
    vmm,
    vchan: new SocketVchanTransport({ localDomain: '0', dir: join(dir, 'vchan') }),
  });
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
});

afterEach(async () => {
  await d.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The transport of the domain the fake Vmm runs next (its first start gets xid 1). */
const guestTransport = (): SocketVchanTransport =>
  new SocketVchanTransport({ localDomain: '1', dir: join(dir, 'vchan') });

describe('after-start steps of a domain', () => {
  it('serve its QubesDB before its qrexec agent is awaited', async () => {
    const start = d.ok('admin.vm.Start', 'work');
    // The agent answers only once the database has arrived: were qrexec awaited first, the start
    // could never finish (the test's timeout would end it).
    const qdb = new GuestQubesDb({ transport: guestTransport() });
    qdb.start();
    await qdb.ready;
    const name = qdb.db.read('/name')?.toString();
    const control = await guestTransport().listen('0', VCHAN_BASE_PORT);
    await exchangeHello(control, new MessageReader(control));
    await start;
    expect(name).toBe('work');
    expect((await d.ok('admin.vm.List', 'work')).split(' ')[2]).toBe('state=Running');
    control.destroy();
    await qdb.stop();
  });

  it('fail the start when a step fails: the domain is killed and halted', async () => {
    await d.ok('admin.vm.property.Set', 'work', 'qrexec_timeout', '1');
    const reply = (await d.call('admin.vm.Start', 'work')).toString('latin1');
    expect(reply).toMatch(/^2\0QubesException\0\0Start failed: qrexec agent of work did not connect/);
    expect(vmm.calls).toEqual(expect.arrayContaining(['start work', 'kill work']));
    expect(vmm.calls.indexOf('kill work')).toBeGreaterThan(vmm.calls.indexOf('start work'));
    expect(vmm.domains.get('work')?.state).toBe('Halted');
    expect((await d.ok('admin.vm.List', 'work')).split(' ')[2]).toBe('state=Halted');
  });
});
