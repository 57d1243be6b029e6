import type { Command } from 'commander';

import { action } from '../context.js';
import type { CliIo } from '../io.js';

export function registerNotes(program: Command, io: CliIo): void {
  program
    .command('notes')
    .description("print a qube's notes, or replace them (like qvm-notes --print / --set)")
    .argument('<vm>')
    .option('--set <text>', 'replace the notes with this text')
    .action(
      action(io, async (ctx, command) => {
        const [vm] = command.processedArgs as [string];
        const text = command.opts<{ set?: string }>().set;
        await ctx.requireVm(vm);
        if (text !== undefined) {
          await ctx.client.vms.setNotes(vm, text);
          return 0;
        }
        const notes = await ctx.client.vms.getNotes(vm);
        if (ctx.json) ctx.printJson({ notes });
        else ctx.printLine(notes);
        return 0;
      }),
    );
}
