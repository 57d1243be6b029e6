import type { Command } from 'commander';

import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

export function registerLabels(program: Command, io: CliIo): void {
  program
    .command('labels')
    .description('list labels with their colours, or create / remove a custom label')
    .argument('[action]', 'list (default), create or remove')
    .argument('[name]')
    .argument('[color]', 'for create: 0xRRGGBB')
    .action(
      action(io, async (ctx, command) => {
        const [mode = 'list', name, color] = command.processedArgs as [string?, string?, string?];
        const labels = ctx.client.labels;
        if (mode === 'list') {
          const rows: [string, string][] = [];
          for (const label of await labels.list()) rows.push([label, await labels.getColor(label)]);
          if (ctx.json) ctx.printJson(rows.map(([n, c]) => ({ name: n, color: c })));
          else ctx.print(formatTable(rows));
          return 0;
        }
        if (mode === 'create') {
          if (name === undefined || color === undefined)
            throw new UsageError('create needs a name and a colour');
          await labels.create(name, color);
          return 0;
        }
        if (mode === 'remove') {
          if (name === undefined) throw new UsageError('remove needs a label name');
          await labels.remove(name);
          return 0;
        }
        throw new UsageError(`invalid action: '${mode}' (choose from list, create, remove)`);
      }),
    );
}
