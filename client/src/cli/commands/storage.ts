import type { Command } from 'commander';

import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

export function registerStorage(program: Command, io: CliIo): void {
  const volume = program.command('volume').description("inspect qubes' volumes (like qvm-volume)");
  volume
    .command('list')
    .description("a qube's volumes with their pool and size")
    .argument('<vm>')
    .action(
      action(io, async (ctx, command) => {
        const [vm] = command.processedArgs as [string];
        await ctx.requireVm(vm);
        const rows: Record<string, string>[] = [];
        for (const name of await ctx.client.volumes.list(vm)) {
          rows.push({ name, ...(await ctx.client.volumes.info(vm, name)) });
        }
        if (ctx.json) {
          ctx.printJson(rows);
          return 0;
        }
        const columns = ['name', 'pool', 'vid', 'size', 'usage', 'rw'];
        ctx.print(
          formatTable([
            columns.map((c) => c.toUpperCase()),
            ...rows.map((row) => columns.map((c) => row[c] || '-')),
          ]),
        );
        return 0;
      }),
    );
  volume
    .command('info')
    .description('all properties of one volume')
    .argument('<vm:volume>')
    .action(
      action(io, async (ctx, command) => {
        const [spec] = command.processedArgs as [string];
        const colon = spec.indexOf(':');
        if (colon <= 0 || colon === spec.length - 1)
          throw new UsageError(`expected VM:VOLUME, got '${spec}'`);
        const vm = spec.slice(0, colon);
        await ctx.requireVm(vm);
        const info = await ctx.client.volumes.info(vm, spec.slice(colon + 1));
        if (ctx.json) ctx.printJson(info);
        else ctx.print(formatTable(Object.entries(info)));
        return 0;
      }),
    );

  const pool = program.command('pool').description('inspect storage pools (like qvm-pool)');
  pool
    .command('list')
    .description('pools with their driver')
    .action(
      action(io, async (ctx) => {
        const pools: Record<string, string>[] = [];
        for (const name of await ctx.client.pools.list()) {
          pools.push({ name, ...(await ctx.client.pools.info(name)) });
        }
        if (ctx.json) ctx.printJson(pools);
        else
          ctx.print(formatTable([['NAME', 'DRIVER'], ...pools.map((p) => [p.name ?? '-', p.driver ?? '-'])]));
        return 0;
      }),
    );
  pool
    .command('info')
    .description('all properties of one pool')
    .argument('<pool>')
    .action(
      action(io, async (ctx, command) => {
        const [name] = command.processedArgs as [string];
        const info = await ctx.client.pools.info(name);
        if (ctx.json) ctx.printJson(info);
        else ctx.print(formatTable(Object.entries(info)));
        return 0;
      }),
    );
}
