import type { Command } from 'commander';

import { isRunning } from '../../api/vm-api.js';
import { QubesError, QubesVMAlreadyStartedError, QubesVMNotStartedError } from '../../errors.js';
import { action, type CliContext } from '../context.js';
import type { CliIo } from '../io.js';

/**
 * Runs `step` for each qube in turn; a Qubes error on one qube is reported as `<failure>: <vm>: <message>`
 * (upstream's wording) and does not stop the others. Exit status 1 if any failed.
 */
async function forEachVm(
  ctx: CliContext,
  names: string[],
  failure: string,
  step: (vm: string) => Promise<void>,
): Promise<number> {
  await ctx.requireVms(names);
  let failed = 0;
  for (const vm of names) {
    try {
      await step(vm);
    } catch (err) {
      if (!(err instanceof QubesError)) throw err;
      failed++;
      ctx.printError(`${failure}: ${vm}: ${err.message}`);
    }
  }
  return failed > 0 ? 1 : 0;
}

export function registerPower(program: Command, io: CliIo): void {
  program
    .command('start')
    .description('start qubes (like qvm-start)')
    .argument('<vm...>')
    .option('--skip-if-running', 'do not fail if a qube is already running')
    .action(
      action(io, (ctx, command) => {
        const skip = command.opts<{ skipIfRunning?: boolean }>().skipIfRunning ?? false;
        return forEachVm(ctx, command.processedArgs[0] as string[], 'Starting qube failed', async (vm) => {
          const { powerState } = await ctx.client.vms.currentState(vm);
          if (isRunning(powerState)) {
            if (skip) return;
            throw new QubesVMAlreadyStartedError('Domain is already running');
          }
          await ctx.client.vms.start(vm);
        });
      }),
    );

  program
    .command('shutdown')
    .description('shut qubes down (like qvm-shutdown); a qube that is already off is not an error')
    .argument('<vm...>')
    .option('--force', 'shut down even if other running qubes depend on it')
    .option('--wait', 'return only once the qubes are off')
    .action(
      action(io, (ctx, command) => {
        const options = command.opts<{ force?: boolean; wait?: boolean }>();
        return forEachVm(ctx, command.processedArgs[0] as string[], 'Failed to shut down', async (vm) => {
          try {
            await ctx.client.vms.shutdown(vm, options);
          } catch (err) {
            if (!(err instanceof QubesVMNotStartedError)) throw err;
          }
        });
      }),
    );

  const simple: [string, string, string, (ctx: CliContext, vm: string) => Promise<void>][] = [
    ['kill', 'kill qubes at once (like qvm-kill)', 'Failed to kill', (ctx, vm) => ctx.client.vms.kill(vm)],
    ['pause', 'pause qubes (like qvm-pause)', 'Failed to pause', (ctx, vm) => ctx.client.vms.pause(vm)],
    [
      'unpause',
      'unpause qubes (like qvm-unpause)',
      'Failed to unpause',
      (ctx, vm) => ctx.client.vms.unpause(vm),
    ],
  ];
  for (const [name, description, failure, step] of simple) {
    program
      .command(name)
      .description(description)
      .argument('<vm...>')
      .action(
        action(io, (ctx, command) =>
          forEachVm(ctx, command.processedArgs[0] as string[], failure, (vm) => step(ctx, vm)),
        ),
      );
  }
}
