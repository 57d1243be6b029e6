import type { Command } from 'commander';

import { confirm } from '../confirm.js';
import { action } from '../context.js';
import type { CliIo } from '../io.js';

export function registerRemove(program: Command, io: CliIo): void {
  program
    .command('remove')
    .description('remove qubes and all their data (like qvm-remove)')
    .argument('<vm...>')
    .option('-f, --force', 'do not ask for confirmation')
    .action(
      action(io, async (ctx, command) => {
        const names = command.processedArgs[0] as string[];
        if (names.includes('dom0')) {
          ctx.printError("Domain 'dom0' cannot be removed.");
          return 1;
        }
        await ctx.requireVms(names);
        if (
          !command.opts<{ force?: boolean }>().force &&
          !(await confirm(ctx, [
            'This will completely remove the selected VM(s)...',
            ...names.map((n) => `  ${n}`),
          ]))
        ) {
          ctx.printError('Remove cancelled.');
          return 1;
        }
        for (const vm of names) await ctx.client.vms.remove(vm);
        return 0;
      }),
    );
}
