import type { Command } from 'commander';

import type { AdminEvent } from '../../events.js';
import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';

export function registerEvents(program: Command, io: CliIo): void {
  program
    .command('events')
    .description('print Admin API events as they happen, one per line: <subject|-> <event> [key=value...]')
    .argument('[vm]', "only this qube's events (default: everything)")
    .option('--stats', 'stream vm-stats events (admin.vm.Stats) instead')
    .option('--count <n>', 'stop after n events (connection-established included)')
    .action(
      action(io, async (ctx, command) => {
        const [vm = 'dom0'] = command.processedArgs as [string?];
        const opts = command.opts<{ stats?: boolean; count?: string }>();
        let limit = Infinity;
        if (opts.count !== undefined) {
          limit = Number(opts.count);
          if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`invalid count: ${opts.count}`);
        }
        const stream = opts.stats ? ctx.client.stats(vm) : ctx.client.events(vm);
        let seen = 0;
        for await (const event of stream) {
          if (ctx.json) ctx.printJson(event);
          else ctx.printLine(formatEvent(event));
          if (++seen >= limit) break;
        }
        return 0;
      }),
    );
}

function formatEvent(event: AdminEvent): string {
  const fields = Object.entries(event.kwargs).map(([key, value]) => `${key}=${value}`);
  return [event.subject || '-', event.event, ...fields].join(' ');
}
