import type { CapabilityName } from '@odyssey/hal';

import { expectEqual, fail, Unsupported, type Check, type CheckContext } from '../check.js';
import { watchEvents } from '../events.js';
import { QUBES } from '../qubes.js';
import { guestsOf } from './guest.js';

const lifecycle = (
  id: string,
  run: (ctx: CheckContext) => Promise<void>,
  needs?: readonly CapabilityName[],
): Check => ({ id: `lifecycle.${id}`, category: 'lifecycle', run, ...(needs ? { needs } : {}) });

async function powerState(ctx: CheckContext, vm: string): Promise<string> {
  return (await ctx.client.vms.currentState(vm)).powerState;
}

/** Each lifecycle check starts from, and leaves, conf-peer in a known state. */
export const lifecycleChecks: readonly Check[] = [
  lifecycle('create-qubes', async ({ client, virtMode }) => {
    await client.call('admin.vm.Create.TemplateVM', 'dom0', '', `name=${QUBES.template} label=black`);
    if (virtMode) await client.call('admin.vm.property.Set', QUBES.template, 'virt_mode', virtMode);
    for (const vm of [QUBES.mgmt, QUBES.peer])
      await client.call('admin.vm.Create.AppVM', 'dom0', QUBES.template, `name=${vm} label=green`);
  }),
  lifecycle('start', async (ctx) => {
    // odysseyd answers admin.vm.Start only once the guest's qrexec agent has connected, so the call's
    // duration is the time until qrexec is ready; CurrentState then confirms the guest runs.
    const begin = performance.now();
    await ctx.client.vms.start(QUBES.peer);
    const state = await powerState(ctx, QUBES.peer);
    ctx.metrics['start_to_qrexec_ready_ms'] = Math.round(performance.now() - begin);
    expectEqual(state, 'Running', 'power_state after admin.vm.Start');
  }),
  lifecycle(
    'stats',
    async ({ client }) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 20_000);
      try {
        for await (const ev of client.stats('dom0', abort.signal))
          if (ev.event === 'vm-stats' && ev.subject === QUBES.peer) return;
        fail('no vm-stats event for the running qube within 20 s');
      } finally {
        clearTimeout(timer);
        abort.abort();
      }
    },
    ['stats'],
  ),
  lifecycle(
    'pause-unpause',
    async (ctx) => {
      const paused = await watchEvents(
        ctx.client,
        (ev) => ev.subject === QUBES.peer && ev.event === 'domain-paused',
      );
      await ctx.client.vms.pause(QUBES.peer);
      await paused.next;
      expectEqual(await powerState(ctx, QUBES.peer), 'Paused', 'power_state after admin.vm.Pause');
      const unpaused = await watchEvents(
        ctx.client,
        (ev) => ev.subject === QUBES.peer && ev.event === 'domain-unpaused',
      );
      await ctx.client.vms.unpause(QUBES.peer);
      await unpaused.next;
      expectEqual(await powerState(ctx, QUBES.peer), 'Running', 'power_state after admin.vm.Unpause');
    },
    ['pause'],
  ),
  lifecycle(
    'suspend-resume',
    async (ctx) => {
      // Suspend keeps the guest's memory (libvirt's managed save on the libvirt backends).
      await ctx.client.vms.suspend(QUBES.peer);
      expectEqual(await powerState(ctx, QUBES.peer), 'Suspended', 'power_state after admin.vm.Suspend');
      await ctx.client.vms.resume(QUBES.peer);
      expectEqual(await powerState(ctx, QUBES.peer), 'Running', 'power_state after admin.vm.Resume');
    },
    ['suspend'],
  ),
  lifecycle('shutdown-wait', async (ctx) => {
    const shutdown = await watchEvents(
      ctx.client,
      (ev) => ev.subject === QUBES.peer && ev.event === 'domain-shutdown',
    );
    await ctx.client.vms.shutdown(QUBES.peer, { wait: true });
    expectEqual(await powerState(ctx, QUBES.peer), 'Halted', 'power_state after admin.vm.Shutdown+wait');
    await shutdown.next;
  }),
  lifecycle('kill', async (ctx) => {
    await ctx.client.vms.start(QUBES.peer);
    const shutdown = await watchEvents(
      ctx.client,
      (ev) => ev.subject === QUBES.peer && ev.event === 'domain-shutdown',
    );
    await ctx.client.vms.kill(QUBES.peer);
    await shutdown.next;
    expectEqual(await powerState(ctx, QUBES.peer), 'Halted', 'power_state after admin.vm.Kill');
  }),
  lifecycle('crash', async (ctx) => {
    // A guest that dies on its own ends Halted with domain-shutdown, as a clean stop does.
    const guests = guestsOf(ctx);
    await ctx.client.vms.start(QUBES.peer);
    const shutdown = await watchEvents(
      ctx.client,
      (ev) => ev.subject === QUBES.peer && ev.event === 'domain-shutdown',
    );
    await guests.crash(QUBES.peer);
    await shutdown.next;
    expectEqual(await powerState(ctx, QUBES.peer), 'Halted', 'power_state after the guest crashed');
  }),
  // The daemon believes the backend, not its own cache: a domain the suite's own instance of the
  // backend destroys (as another tool on the host would) must be Halted with domain-shutdown.
  lifecycle('stopped-behind-back', async (ctx) => {
    await ctx.client.vms.start(QUBES.peer);
    const outside = ctx.backend.current.vmm;
    if ((await outside.state(QUBES.peer)).state === 'Halted')
      throw new Unsupported(
        'suite',
        `another instance of the backend does not see ${QUBES.peer} (its domains are private to the ` +
          'instance that started them), so the suite cannot stop one behind the daemon; lifecycle.crash covers it',
      );
    const shutdown = await watchEvents(
      ctx.client,
      (ev) => ev.subject === QUBES.peer && ev.event === 'domain-shutdown',
    );
    await outside.kill(QUBES.peer);
    await shutdown.next;
    expectEqual(await powerState(ctx, QUBES.peer), 'Halted', 'power_state after a kill behind the daemon');
  }),
  lifecycle('start-guests', async ({ client }) => {
    await client.vms.start(QUBES.mgmt);
    await client.vms.start(QUBES.peer);
  }),
];
