import type { Command } from 'commander';

import { QubesFeatureNotFoundError } from '../../errors.js';
import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

export function registerFeatures(program: Command, io: CliIo): void {
  program
    .command('features')
    .description("list, show, set or unset a qube's features (like qvm-features)")
    .argument('<vm>')
    .argument('[feature]')
    .argument('[value]')
    .option('-D, --unset', 'unset the feature (aliases: --default, --delete)')
    .option('--default', 'same as --unset')
    .option('--delete', 'same as --unset')
    .action(
      action(io, async (ctx, command) => {
        const [vm, feature, value] = command.processedArgs as [string, string?, string?];
        const opts = command.opts<{ unset?: boolean; default?: boolean; delete?: boolean }>();
        const unset = opts.unset || opts.default || opts.delete;
        await ctx.requireVm(vm);
        const features = ctx.client.features;
        if (feature === undefined) {
          if (unset) throw new UsageError('--unset requires a feature');
          const all = await features.getAll(vm);
          if (ctx.json) ctx.printJson(Object.fromEntries(all));
          else ctx.print(formatTable(all));
          return 0;
        }
        if (unset) {
          if (value !== undefined) throw new UsageError('cannot both set and unset a value');
          try {
            await features.remove(vm, feature);
          } catch (err) {
            if (!(err instanceof QubesFeatureNotFoundError)) throw err;
          }
          return 0;
        }
        if (value !== undefined) {
          await features.set(vm, feature, value);
          return 0;
        }
        // Not set: exit status 1 and no output, so scripts can test for presence.
        const current = await features.find(vm, feature);
        if (current === undefined) return 1;
        if (ctx.json) ctx.printJson(current);
        else ctx.printLine(current);
        return 0;
      }),
    );
}
