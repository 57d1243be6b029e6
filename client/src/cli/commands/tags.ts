import type { Command } from 'commander';

import { QubesTagNotFoundError } from '../../errors.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';

/** qvm-tags' sub-actions and their aliases. */
const ACTIONS: Readonly<Record<string, 'list' | 'add' | 'del'>> = {
  list: 'list',
  ls: 'list',
  l: 'list',
  add: 'add',
  a: 'add',
  set: 'add',
  del: 'del',
  d: 'del',
  unset: 'del',
  u: 'del',
};

export function registerTags(program: Command, io: CliIo): void {
  program
    .command('tags')
    .description("list, query, add or remove a qube's tags (like qvm-tags)")
    .argument('<vm>')
    .argument('[action]', 'list (default), add or del')
    .argument('[tag...]')
    .action(
      action(io, async (ctx, command) => {
        const [vm, word = 'list', tags] = command.processedArgs as [string, string | undefined, string[]];
        const mode = ACTIONS[word];
        if (!mode) throw new UsageError(`invalid action: '${word}' (choose from list, add, del)`);
        await ctx.requireVm(vm);
        if (mode === 'list') return query(ctx, vm, tags);
        if (tags.length === 0) throw new UsageError(`${word} requires at least one tag`);
        if (mode === 'add') {
          for (const tag of tags) await ctx.client.tags.add(vm, tag);
          return 0;
        }
        for (const tag of tags) {
          try {
            await ctx.client.tags.remove(vm, tag);
          } catch (err) {
            if (!(err instanceof QubesTagNotFoundError)) throw err;
          }
        }
        return 0;
      }),
    );
}

/** Without a tag: all tags; with one: print it and succeed only if the qube has it. */
async function query(ctx: CliContext, vm: string, tags: string[]): Promise<number> {
  if (tags.length > 1) throw new UsageError('list takes at most one tag');
  const [tag] = tags;
  if (tag === undefined) {
    const all = [...(await ctx.client.tags.list(vm))].sort();
    if (ctx.json) ctx.printJson(all);
    else if (all.length > 0) ctx.printLine(all.join('\n'));
    return 0;
  }
  const has = await ctx.client.tags.has(vm, tag);
  if (ctx.json) ctx.printJson(has);
  else if (has) ctx.printLine(tag);
  return has ? 0 : 1;
}
