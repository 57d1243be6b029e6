import type { CapabilityName } from '@odyssey/hal';
import { parseVmList } from '@odyssey/client';

import { expectEqual, fail, type Check, type CheckContext } from '../check.js';
import { watchEvents } from '../events.js';
import { QUBES } from '../qubes.js';
import { ECHO_SERVICE } from '../services.js';
import { guestsOf } from './guest.js';

const dispvm = (
  id: string,
  run: (ctx: CheckContext) => Promise<void>,
  needs?: readonly CapabilityName[],
): Check => ({
  id: `dispvm.${id}`,
  category: 'dispvm',
  run,
  ...(needs ? { needs } : {}),
});

/** The disposable the create check made, for the checks after it. */
let disposable = '';

export const dispvmChecks: readonly Check[] = [
  dispvm('create', async ({ client }) => {
    await client.call('admin.vm.Create.AppVM', 'dom0', QUBES.template, `name=${QUBES.dvmTemplate} label=red`);
    await client.vmProperties(QUBES.dvmTemplate).set('template_for_dispvms', 'True');
    disposable = await client.vms.createDisposable(QUBES.dvmTemplate);
    const info = parseVmList(await client.call('admin.vm.List', disposable));
    expectEqual(info[0]?.klass, 'DispVM', 'class of the disposable');
    const autoCleanup = (await client.call('admin.vm.property.Get', disposable, 'auto_cleanup')).toString();
    expectEqual(autoCleanup.endsWith(' True'), true, `auto_cleanup (${autoCleanup})`);
  }),
  dispvm('start', async ({ client }) => {
    await client.vms.start(disposable);
    expectEqual((await client.vms.currentState(disposable)).powerState, 'Running', 'disposable state');
  }),
  dispvm('dom0-call', async (ctx) => {
    const guests = guestsOf(ctx);
    await guests.installService(disposable, 'test.Echo', ECHO_SERVICE);
    const reply = await guests.dom0Call(disposable, 'test.Echo', 'ping');
    expectEqual(
      reply,
      { code: 0, stdout: 'dom0 says: ping', stderr: '' },
      'test.Echo in the disposable from dom0',
    );
  }),
  dispvm(
    'qrexec-call',
    async (ctx) => {
      const guests = guestsOf(ctx);
      await guests.installService(disposable, 'test.Echo', ECHO_SERVICE);
      const reply = await guests.qrexecClientVm(QUBES.mgmt, disposable, 'test.Echo', 'ping');
      expectEqual(
        reply,
        { code: 0, stdout: `${QUBES.mgmt} says: ping`, stderr: '' },
        'test.Echo in the disposable',
      );
    },
    ['vmToVmVchan'],
  ),
  dispvm('kill-removes', async ({ client }) => {
    const removed = await watchEvents(
      client,
      (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === disposable,
    );
    await client.vms.kill(disposable);
    await removed.next;
    const names = parseVmList(await client.call('admin.vm.List', 'dom0')).map((vm) => vm.name);
    if (names.includes(disposable)) fail(`${disposable} still listed after it stopped (auto_cleanup)`);
  }),
  // What a user of disposables waits for: a fresh one created, started, called once and gone again.
  dispvm('round-trip', async (ctx) => {
    const guests = guestsOf(ctx);
    const { client } = ctx;
    const begin = performance.now();
    const name = await client.vms.createDisposable(QUBES.dvmTemplate);
    await client.vms.start(name);
    await guests.installService(name, 'test.Echo', ECHO_SERVICE);
    const reply = await guests.dom0Call(name, 'test.Echo', 'ping');
    expectEqual(reply.stdout, 'dom0 says: ping', `test.Echo in ${name}`);
    // Watched from here: the event timeout must not include the (nested Xen: 25 s) start.
    const removed = await watchEvents(
      client,
      (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === name,
    );
    await client.vms.kill(name);
    await removed.next;
    ctx.metrics['dispvm_round_trip_ms'] = Math.round(performance.now() - begin);
  }),
];
