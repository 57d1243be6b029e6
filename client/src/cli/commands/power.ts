import type { Command } from 'commander';

import { isRunning } from '../../api/vm-api.js';
import { QubesError, QubesVMAlreadyStartedError, QubesVMNotStartedError } from '../../errors.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';

interface SelectionOptions {
  all?: boolean;
  exclude: string[];
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Upstream's qube selection for these tools: names, or `--all` (every qube but dom0) less `--exclude`. */
function withSelection(command: Command): Command {
  return command
    .argument('[vm...]')
    .option('--all', 'act on every qube except dom0')
    .option('--exclude <vm>', 'with --all, leave this qube out (repeatable)', collect, []);
}

async function selectedVms(ctx: CliContext, command: Command): Promise<string[]> {
  const names = command.processedArgs[0] as string[];
  const { all, exclude } = command.opts<SelectionOptions>();
  if (!all) {
    if (exclude.length > 0) throw new UsageError('--exclude can only be used with --all');
    if (names.length === 0) throw new UsageError('a qube name or --all is required');
    return names;
  }
  if (names.length > 0) throw new UsageError('--all cannot be used with qube names');
  return (await ctx.listVms())
    .filter((vm) => vm.klass !== 'AdminVM' && !exclude.includes(vm.name))
    .map((vm) => vm.name)
    .sort();
}

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
  withSelection(program.command('start').description('start qubes (like qvm-start)'))
    .option('--skip-if-running', 'do not fail if a qube is already running')
    .action(
      action(io, async (ctx, command) => {
        const skip = command.opts<{ skipIfRunning?: boolean }>().skipIfRunning ?? false;
        return forEachVm(ctx, await selectedVms(ctx, command), 'Starting qube failed', async (vm) => {
          const { powerState } = await ctx.client.vms.currentState(vm);
          if (isRunning(powerState)) {
            if (skip) return;
            throw new QubesVMAlreadyStartedError('Domain is already running');
          }
          await ctx.client.vms.start(vm);
        });
      }),
    );

  withSelection(
    program
      .command('shutdown')
      .description('shut qubes down (like qvm-shutdown); a qube that is already off is not an error'),
  )
    .option('--force', 'shut down even if other running qubes depend on it')
    .option('--wait', 'return only once the qubes are off')
    .option(
      '--timeout <seconds>',
      "upstream's deprecated form of --wait (the qube's shutdown_timeout applies)",
    )
    .action(
      action(io, async (ctx, command) => {
        const { force, wait, timeout } = command.opts<{
          force?: boolean;
          wait?: boolean;
          timeout?: string;
        }>();
        const options = { force, wait: wait || timeout !== undefined };
        return forEachVm(ctx, await selectedVms(ctx, command), 'Failed to shut down', async (vm) => {
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
    withSelection(program.command(name).description(description)).action(
      action(io, async (ctx, command) =>
        forEachVm(ctx, await selectedVms(ctx, command), failure, (vm) => step(ctx, vm)),
      ),
    );
  }
}
