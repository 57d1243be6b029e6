import { timerMs } from '../../clock.js';
import { AP } from '../../model/app-properties.js';
import type { QubesEvent } from '../../model/events.js';
import type { CallContext } from '../call-context.js';

/** Events that exist for the daemon's own bookkeeping and are never streamed (upstream's vm_handler list). */
function isInternal(name: string): boolean {
  return (
    name.startsWith('admin-permission:') ||
    name.startsWith('device-get:') ||
    name.startsWith('device-list:') ||
    name.startsWith('device-list-attached:') ||
    name === 'domain-is-fully-usable'
  );
}

/** The arguments as the wire orders them (the object's key order); an absent optional one is left out. */
function wireArgs(args: Readonly<Record<string, string | undefined>>): [string, string][] {
  const out: [string, string][] = [];
  for (const [key, value] of Object.entries(args)) if (value !== undefined) out.push([key, value]);
  return out;
}

function wanted(ctx: CallContext, event: QubesEvent): boolean {
  if (isInternal(event.name)) return false;
  if (!ctx.dest.isAdminVm && event.subject !== ctx.dest) return false;
  return ctx.services.access.eventVisible(ctx, event);
}

export const events = {
  /** Streams events until the client disconnects. */
  events: async (ctx: CallContext): Promise<undefined> => {
    const unsubscribe = ctx.app.events.subscribe((event) => {
      if (wanted(ctx, event)) ctx.stream.send(event.subject?.name ?? '', event.name, wireArgs(event.args));
    });
    ctx.stream.send('', 'connection-established', []);
    try {
      await ctx.stream.closed;
    } finally {
      unsubscribe();
    }
    return undefined;
  },

  /** One vm-stats event per running domain every stats_interval seconds, until the client disconnects. */
  stats: async (ctx: CallContext): Promise<undefined> => {
    ctx.stream.send('', 'connection-established', []);
    let open = true;
    void ctx.stream.closed.then(() => (open = false));
    while (open) {
      const samples = await ctx.services.lifecycle.stats().catch(() => []);
      for (const s of samples) {
        const vm = ctx.app.domains.byName(s.name);
        if (!vm || !open) continue;
        if (!ctx.dest.isAdminVm && vm !== ctx.dest) continue;
        if (!ctx.services.access.vmVisible(ctx, vm)) continue;
        ctx.stream.send(vm.name, 'vm-stats', [
          ['memory_kb', String(Math.trunc(s.memoryKb))],
          ['memory_assigned_total', String(Math.trunc(s.memoryMaxKb))],
          ['memory_assigned_usable', String(Math.trunc(s.memoryMaxKb))],
          ['memory_with_swap_used', String(Math.trunc(s.memoryKb))],
          ['cpu_time', String(Math.trunc(s.cpuTimeNs / 1_000_000))],
          ['cpu_usage', String(Math.trunc(s.cpuUsagePercent))],
          ['online_vcpus', String(s.onlineVcpus)],
        ]);
      }
      const interval = timerMs(ctx.app.props.get(AP.stats_interval));
      await Promise.race([ctx.stream.closed, new Promise((r) => setTimeout(r, interval).unref())]);
    }
    return undefined;
  },
};
