/**
 * qubes.NotifyUpdates on a real daemon, called through its misc socket with
 * qrexec's header: which qube gets `updates-available` (the caller when
 * updateable, else the nearest updateable qube up its template chain, under
 * upstream's conditions), the dates, and the refusals of hostile input.
 */
import 'reflect-metadata';

import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Vm } from '../../src/model/vm.js';
import { exc, rawCall, startDaemon, type TestDaemon } from '../support/harness.js';

/** A fixed clock in dom0's local time, so the expected strings hold in any time zone. */
let now = new Date(2026, 11, 4, 22, 5, 9).getTime();
const FIRST = '2026-12-04 22:05:09';
const LATER = '2026-12-05 08:00:00';

let vchanDir: string;
let d: TestDaemon;

beforeEach(async () => {
  now = new Date(2026, 11, 4, 22, 5, 9).getTime();
  // The misc socket is served where domains can reach dom0: with a vchan transport.
  vchanDir = await mkdtemp(join(tmpdir(), 'odyssey-notify-'));
  d = await startDaemon({
    clock: { now: () => now },
    vchan: new SocketVchanTransport({ localDomain: '0', dir: vchanDir }),
  });
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
  await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=alone label=red');
});

afterEach(async () => {
  await d.stop();
  await rm(vchanDir, { recursive: true, force: true });
});

const misc = (): string => join(d.stateDir, 'run', 'qubesd.misc.sock');

/** What qrexec writes to the socket service for a call from `src` to `dest`. */
const notify = async (
  src: string,
  payload: string | Buffer,
  arg = '',
  dest = 'keyword adminvm',
): Promise<string> =>
  (
    await rawCall(
      misc(),
      Buffer.concat([Buffer.from(`qubes.NotifyUpdates+${arg} ${src} ${dest}\0`), Buffer.from(payload)]),
    )
  ).toString('latin1');

const vm = (name: string): Vm => d.daemon.app.domains.get(name);
const features = (name: string): Record<string, string> => Object.fromEntries(vm(name).features.entries());

describe('qubes.NotifyUpdates', () => {
  it('links the qrexec service to the misc socket', async () => {
    expect(await readlink(join(d.stateDir, 'qrexec-services', 'qubes.NotifyUpdates'))).toBe(misc());
  });

  it('trusts an updateable qube about itself and dates the check and the update', async () => {
    expect(await notify('tpl', '3\n')).toBe('0\0');
    expect(features('tpl')).toEqual({ 'updates-available': '1', 'last-updates-check': FIRST });
    now = new Date(2026, 11, 5, 8, 0, 0).getTime();
    // Pending updates reported gone: they were installed now.
    expect(await notify('tpl', ' 0 ')).toBe('0\0');
    expect(features('tpl')).toEqual({
      'updates-available': '',
      'last-updates-check': LATER,
      'last-update': LATER,
    });
    expect(await notify('alone', '007')).toBe('0\0');
    expect(features('alone')).toEqual({ 'updates-available': '1', 'last-updates-check': LATER });
    expect(features('work')).toEqual({});
    // Saved as upstream's app.save().
    await d.daemon.store.flush();
    expect(await readFile(join(d.stateDir, 'qubes.xml'), 'utf8')).toContain(
      '<feature name="updates-available">1</feature>',
    );
  });

  it("takes a template-based qube's report of updates as a hint for its halted template", async () => {
    // No updates: ignored.
    expect(await notify('work', '0')).toBe('0\0');
    expect(features('tpl')).toEqual({});
    // A running template reports for itself.
    vm('tpl').powerState = 'Running';
    expect(await notify('work', '2')).toBe('0\0');
    expect(features('tpl')).toEqual({});
    vm('tpl').powerState = 'Halted';
    expect(await notify('work', '2')).toBe('0\0');
    expect(features('tpl')).toEqual({ 'updates-available': '1', 'last-updates-check': FIRST });
    expect(features('work')).toEqual({});
  });

  it('takes no hint for a template still shutting down: to upstream it is running', async () => {
    for (const state of ['Halting', 'Dying', 'Crashed'] as const) {
      vm('tpl').powerState = state;
      expect([state, await notify('work', '2')]).toEqual([state, '0\0']);
      expect(features('tpl')).toEqual({});
    }
  });

  it('ignores the hint of a qube whose root is outdated (the template was updated since)', async () => {
    expect(await d.ok('admin.vm.volume.Info', 'work', 'root')).toContain('is_outdated=False');
    // The root's snapshot is of another image than the template's committed one now.
    await writeFile(join(d.stateDir, 'appvms', 'work', 'root.img'), '');
    expect(await d.ok('admin.vm.volume.Info', 'work', 'root')).toContain('is_outdated=True');
    expect(await notify('work', '5')).toBe('0\0');
    expect(features('tpl')).toEqual({});
  });

  it('refuses anything but digits, an argument and another destination, changing nothing', async () => {
    const notDigit = exc('ProtocolError', 'Update count is not a digit');
    for (const payload of [
      'x',
      '-1',
      '+1',
      '1 2',
      '1.0',
      ' \n',
      '0x1',
      Buffer.from([0xd9, 0xa1]),
      Buffer.from('1\0'),
    ])
      expect(await notify('tpl', payload)).toBe(notDigit);
    expect(await notify('tpl', '')).toBe(exc('ProtocolError', 'expected payload'));
    expect(await notify('tpl', '1', 'x')).toBe(exc('ProtocolError', 'unexpected argument'));
    expect(await notify('tpl', '1', '', 'name work')).toBe(
      exc('ProtocolError', 'expected destination to be AdminVM'),
    );
    expect(await notify('nosuch', '1')).toMatch(/^2\0QubesVMNotFoundError\0/);
    expect(features('tpl')).toEqual({});
  });
});
