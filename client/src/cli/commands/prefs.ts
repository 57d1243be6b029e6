import type { Command } from 'commander';

import { action } from '../context.js';
import type { CliIo } from '../io.js';
import {
  runPropertyCommand,
  withPropertyOptions,
  type PropertyCommandOptions,
} from '../property-commands.js';

export function registerPrefs(program: Command, io: CliIo): void {
  withPropertyOptions(
    program
      .command('prefs')
      .description("list, show or change a qube's properties (like qvm-prefs)")
      .argument('<vm>')
      .argument('[property]')
      .argument('[value]'),
  ).action(
    action(io, async (ctx, command) => {
      const [vm, property, value] = command.processedArgs as [string, string?, string?];
      await ctx.requireVm(vm);
      return runPropertyCommand(
        ctx,
        ctx.client.vmProperties(vm),
        property,
        value,
        command.opts<PropertyCommandOptions>(),
      );
    }),
  );
}
