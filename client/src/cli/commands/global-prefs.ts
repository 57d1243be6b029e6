import type { Command } from 'commander';

import { action } from '../context.js';
import type { CliIo } from '../io.js';
import {
  runPropertyCommand,
  withPropertyOptions,
  type PropertyCommandOptions,
} from '../property-commands.js';

export function registerGlobalPrefs(program: Command, io: CliIo): void {
  withPropertyOptions(
    program
      .command('global-prefs')
      .description('list, show or change system-wide properties (like qubes-prefs)')
      .argument('[property]')
      .argument('[value]'),
  ).action(
    action(io, async (ctx, command) => {
      const [property, value] = command.processedArgs as [string?, string?];
      return runPropertyCommand(
        ctx,
        ctx.client.globalProperties,
        property,
        value,
        command.opts<PropertyCommandOptions>(),
      );
    }),
  );
}
