import type { Command } from 'commander';

import { isRunning, type PowerState } from '../../api/vm-api.js';
import { action } from '../context.js';
import type { CliIo } from '../io.js';

interface CheckOptions {
  running?: boolean;
  paused?: boolean;
  halted?: boolean;
}

export function registerCheck(program: Command, io: CliIo): void {
  program
    .command('check')
    .description(
      'exit 0 if every named qube exists (and is in the given state), 1 if none is, 3 if only some are ' +
        '(like qvm-check)',
    )
    .argument('<vm...>')
    .option('--running', 'is running (paused and suspended count as running)')
    .option('--paused', 'is paused')
    .option('--halted', 'is halted')
    .action(
      action(io, async (ctx, command) => {
        const names = command.processedArgs[0] as string[];
        const opts = command.opts<CheckOptions>();
        const known = new Set((await ctx.listVms()).map((vm) => vm.name));
        const states = new Map<string, PowerState>();
        const matching: string[] = [];
        for (const name of names) {
          if (!known.has(name)) continue;
          const filtered = opts.running || opts.paused || opts.halted;
          const state = filtered ? (await ctx.client.vms.currentState(name)).powerState : undefined;
          if (state) states.set(name, state);
          const ok =
            !filtered ||
            ((!opts.running || (state !== undefined && isRunning(state))) &&
              (!opts.paused || state === 'Paused') &&
              (!opts.halted || state === 'Halted'));
          if (ok) matching.push(name);
        }
        if (ctx.json) {
          ctx.printJson(
            names.map((name) => ({
              name,
              exists: known.has(name),
              state: states.get(name) ?? null,
              matches: matching.includes(name),
            })),
          );
        }
        if (matching.length === names.length) return 0;
        return matching.length === 0 ? 1 : 3;
      }),
    );
}
