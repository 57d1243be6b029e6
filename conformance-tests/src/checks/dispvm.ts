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
    // Its disposables inherit it: a guest booting under TCG (nested Xen most of all) on a loaded host
    // can take longer than upstream's 60 s to reach its agent (CI's nested run once took longer).
    await client.vmProperties(QUBES.dvmTemplate).set('qrexec_timeout', '300');
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
  // What a user of disposables waits for (`qvm-run --dispvm`): a fresh one created, started, called
  // once through a service every guest image has, and gone again.
  dispvm('round-trip', async (ctx) => {
    const { client } = ctx;
    const begin = performance.now();
    const name = await client.vms.createDisposable(QUBES.dvmTemplate);
    await client.vms.start(name);
    expectEqual(await shellPing(ctx, name), SHELL_PING_REPLY, `qubes.VMShell in ${name}`);
    // Watched from here: the event timeout must not include the (nested Xen: 25 s) start.
    const removed = await watchEvents(
      client,
      (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === name,
    );
    await client.vms.kill(name);
    await removed.next;
    ctx.metrics['dispvm_round_trip_ms'] = Math.round(performance.now() - begin);
  }),
  // The same round trip taking a preloaded disposable (preload-dispvm-max 1), and what the pool costs.
  dispvm('preload-round-trip', async (ctx) => {
    const { client } = ctx;
    const preloaded = await fillPool(ctx);
    // The same call into a qube that already runs: what no pool can take off the round trip.
    const baseline = performance.now();
    expectEqual(await shellPing(ctx, QUBES.mgmt), SHELL_PING_REPLY, `qubes.VMShell in ${QUBES.mgmt}`);
    ctx.metrics['running_qube_call_ms'] = Math.round(performance.now() - baseline);
    const removed = await watchEvents(
      client,
      (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === preloaded,
    );
    // The parts are recorded too, to tell where the time goes.
    const begin = performance.now();
    const name = await client.vms.createDisposable(QUBES.dvmTemplate);
    expectEqual(name, preloaded, 'CreateDisposable took the preloaded disposable');
    await client.vms.start(name);
    const taken = performance.now();
    expectEqual(await shellPing(ctx, name), SHELL_PING_REPLY, `qubes.VMShell in ${name}`);
    const called = performance.now();
    await client.vms.kill(name);
    await removed.next;
    const ms = Math.round(performance.now() - begin);
    ctx.metrics['dispvm_preloaded_take_ms'] = Math.round(taken - begin);
    ctx.metrics['dispvm_preloaded_call_ms'] = Math.round(called - taken);
    ctx.metrics['dispvm_preloaded_kill_ms'] = Math.round(performance.now() - called);
    ctx.metrics['dispvm_round_trip_preloaded_ms'] = ms;
    const plain = ctx.metrics['dispvm_round_trip_ms'];
    if (plain !== undefined) ctx.metrics['dispvm_preload_speedup_ratio'] = Math.round((plain / ms) * 10) / 10;
  }),
  dispvm(
    'preload-qrexec-call',
    async (ctx) => {
      const guests = guestsOf(ctx);
      const { client } = ctx;
      const preloaded = await fillPool(ctx);
      const removed = await watchEvents(
        client,
        (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === preloaded,
      );
      const begin = performance.now();
      const reply = await guests.qrexecClientVm(
        QUBES.mgmt,
        `@dispvm:${QUBES.dvmTemplate}`,
        'qubes.VMShell',
        'echo shell-ran\nexit 0\n',
      );
      const ms = performance.now() - begin;
      expectEqual(reply, { code: 0, stdout: 'shell-ran\n', stderr: '' }, `@dispvm call into ${preloaded}`);
      // The call ran in the preloaded qube: it is the one removed after the call.
      await removed.next;
      ctx.metrics['dispvm_call_preloaded_ms'] = Math.round(ms);
    },
    ['vmToVmVchan'],
  ),
  dispvm('preload-max-removed-empties-pool', async ({ client }) => {
    await client.call('admin.vm.feature.Remove', QUBES.dvmTemplate, 'preload-dispvm-max');
    const left = await preloadList(client);
    if (left.length > 0)
      fail(`preload-dispvm still names ${left.join(' ')} after preload-dispvm-max was removed`);
    for (;;) {
      const disposables = parseVmList(await client.call('admin.vm.List', 'dom0')).filter(
        (vm) => vm.klass === 'DispVM',
      );
      if (disposables.length === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }),
];

const SHELL_PING_REPLY = { code: 0, stdout: 'ping\n', stderr: '' };

/** One qubes.VMShell call from dom0 (what `qvm-run --dispvm VM 'echo ping'` sends), its result. */
async function shellPing(
  ctx: CheckContext,
  vm: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const done = await guestsOf(ctx).dom0Call(vm, 'qubes.VMShell', 'echo ping\nexit 0\n');
  return { code: done.code, stdout: done.stdout, stderr: done.stderr };
}

async function preloadList(client: CheckContext['client']): Promise<string[]> {
  const value = await client.call('admin.vm.feature.Get', QUBES.dvmTemplate, 'preload-dispvm').then(
    (b) => b.toString(),
    () => '',
  );
  return value ? value.split(' ') : [];
}

/**
 * A pool of one preloaded disposable: CreateDisposable with the argument
 * `preload` returns once it is started, its system running (the agent answers
 * qubes.WaitForRunningSystem) and paused. The template is told it has the two
 * services upstream requires (WaitForSession is only called with a GUI, which
 * the test guests lack); a long preload-dispvm-delay keeps the refill out of
 * the timing.
 * Records how long the fill took and what the pool costs the host.
 */
async function fillPool(ctx: CheckContext): Promise<string> {
  const { client } = ctx;
  for (const f of [
    'qrexec',
    'supported-rpc.qubes.WaitForRunningSystem',
    'supported-rpc.qubes.WaitForSession',
  ])
    await client.call('admin.vm.feature.Set', QUBES.dvmTemplate, f, '1');
  await client.call('admin.vm.feature.Set', QUBES.dvmTemplate, 'preload-dispvm-delay', '600');
  await client.call('admin.vm.feature.Set', QUBES.dvmTemplate, 'preload-dispvm-max', '1');
  const begin = performance.now();
  await client.call('admin.vm.CreateDisposable', QUBES.dvmTemplate, 'preload');
  const [name] = await preloadList(client);
  if (!name) fail('preload-dispvm names no qube after CreateDisposable+preload');
  ctx.metrics['dispvm_preload_fill_ms'] = Math.round(performance.now() - begin);
  expectEqual((await client.vms.currentState(name)).powerState, 'Paused', `state of preloaded ${name}`);
  await recordPoolMemory(ctx);
  return name;
}

/**
 * What the pool costs the host: CurrentState's `mem` of each preloaded (paused) qube, which is what
 * the backend measures the host paying for it (Xen: its allocation; QEMU: the process's resident
 * set; a container: its cgroup's usage; process: the agent's proportional set), not its maxmem.
 */
async function recordPoolMemory(ctx: CheckContext): Promise<void> {
  const names = await preloadList(ctx.client);
  let totalKb = 0;
  for (const name of names) {
    const state = await ctx.client.vms.currentState(name);
    if (state.powerState !== 'Paused') fail(`preloaded ${name} is ${state.powerState}, not Paused`);
    if (!(state.mem > 0)) fail(`CurrentState of preloaded ${name} says it costs nothing (mem=${state.mem})`);
    totalKb += state.mem;
  }
  ctx.metrics['dispvm_preload_mem_per_qube_mib'] = Math.round(totalKb / names.length / 1024);
  ctx.metrics['dispvm_preload_pool_mem_mib'] = Math.round(totalKb / 1024);
}
