import type { Command } from 'commander';

import { QubesError } from '../../errors.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `-o k=v` options, in the order given. */
function parseOptions(options: readonly string[]): [string, string][] {
  return options.map((opt) => {
    const eq = opt.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected an option as NAME=VALUE, got '${opt}'`);
    return [opt.slice(0, eq), opt.slice(eq + 1)];
  });
}

/** Re-raises a Qubes error with upstream's context prefix; anything else unchanged. */
function prefixed(err: unknown, prefix: string): unknown {
  return err instanceof QubesError
    ? new QubesError(`${prefix}: ${err.message}`, err.type, err.traceback)
    : err;
}

/** Like upstream's PoolsAction: every name must be a pool (`admin.pool.List`), else a usage error. */
async function requirePools(ctx: CliContext, names: readonly string[]): Promise<void> {
  const pools = await ctx.client.pools.list();
  if (names.some((n) => !pools.includes(n))) {
    throw new UsageError(`No such pools: [${names.map((n) => `'${n}'`).join(', ')}]`);
  }
}

export function registerPool(program: Command, io: CliIo): void {
  const pool = program.command('pool').description('manage storage pools (like qvm-pool)');

  pool
    .command('list', { isDefault: true })
    .aliases(['ls', 'l'])
    .description('pools with their driver')
    .action(
      action(io, async (ctx) => {
        const pools: Record<string, string>[] = [];
        for (const name of await ctx.client.pools.list()) {
          pools.push({ name, ...(await ctx.client.pools.info(name)) });
        }
        if (ctx.json) ctx.printJson(pools);
        else
          ctx.print(formatTable([['NAME', 'DRIVER'], ...pools.map((p) => [p.name ?? '', p.driver ?? ''])]));
        return 0;
      }),
    );

  pool
    .command('info')
    .alias('i')
    .description("pools' settings: name, then the rest of the config sorted (size and usage included)")
    .argument('<pool...>')
    .action(
      action(io, async (ctx, command) => {
        const [names] = command.processedArgs as [string[]];
        await requirePools(ctx, names);
        const infos: Record<string, string>[] = [];
        for (const name of names) infos.push(await ctx.client.pools.info(name));
        if (ctx.json) {
          ctx.printJson(infos.length === 1 ? infos[0] : infos);
          return 0;
        }
        const rows: string[][] = [];
        infos.forEach((info, i) => {
          if (i > 0) rows.push(['', '']);
          rows.push(['name', names[i] ?? '']);
          for (const key of Object.keys(info).sort()) {
            if (key !== 'name') rows.push([key, info[key] ?? '']);
          }
        });
        ctx.print(formatTable(rows));
        return 0;
      }),
    );

  pool
    .command('drivers')
    .alias('d')
    .description('pool drivers with the options they take')
    .action(
      action(io, async (ctx) => {
        const drivers = await ctx.client.pools.listDrivers();
        const names = [...drivers.keys()].sort();
        if (ctx.json) {
          ctx.printJson(Object.fromEntries(names.map((d) => [d, drivers.get(d) ?? []])));
          return 0;
        }
        ctx.print(
          formatTable([['DRIVER', 'OPTIONS'], ...names.map((d) => [d, (drivers.get(d) ?? []).join(', ')])]),
        );
        return 0;
      }),
    );

  pool
    .command('add')
    .alias('a')
    .description('add a pool (see `qvm pool drivers` for the options of each driver)')
    .argument('<name>')
    .argument('<driver>')
    .option('-o, --option <name=value>', 'a driver option (repeatable)', collect, [])
    .action(
      action(io, async (ctx, command) => {
        const [name, driver] = command.processedArgs as [string, string];
        const options = Object.fromEntries(parseOptions(command.opts<{ option: string[] }>().option));
        try {
          await ctx.client.pools.add(driver, name, options);
        } catch (err) {
          throw prefixed(err, `Failed to add pool ${name}`);
        }
        return 0;
      }),
    );

  pool
    .command('remove')
    .aliases(['rm', 'r'])
    .description('remove pools (refused while a volume or a default_pool* property uses them)')
    .argument('<name...>')
    .action(
      action(io, async (ctx, command) => {
        const [names] = command.processedArgs as [string[]];
        const errors: string[] = [];
        let type = 'QubesException';
        for (const name of names) {
          try {
            await ctx.client.pools.remove(name);
          } catch (err) {
            if (!(err instanceof QubesError)) throw err;
            type = err.type;
            errors.push(`Failed to remove pool ${name}: ${err.message}`);
          }
        }
        if (errors.length > 0) throw new QubesError(errors.join('\n'), type);
        return 0;
      }),
    );

  pool
    .command('set')
    .alias('s')
    .description('change revisions_to_keep or ephemeral_volatile of a pool')
    .argument('<name>')
    .option(
      '-o, --option <name=value>',
      'revisions_to_keep=N or ephemeral_volatile=BOOL (repeatable)',
      collect,
      [],
    )
    .action(
      action(io, async (ctx, command) => {
        const [name] = command.processedArgs as [string];
        const options = parseOptions(command.opts<{ option: string[] }>().option);
        await requirePools(ctx, [name]);
        const errors: string[] = [];
        let type = 'QubesException';
        for (const [opt, value] of options) {
          try {
            if (opt === 'revisions_to_keep') await ctx.client.pools.setRevisionsToKeep(name, value);
            else if (opt === 'ephemeral_volatile') await ctx.client.pools.setEphemeralVolatile(name, value);
            else errors.push(`Setting option ${opt} is not supported for pool ${name}`);
          } catch (err) {
            if (!(err instanceof QubesError)) throw err;
            type = err.type;
            errors.push(`Failed to set option ${opt} for pool ${name}: ${err.message}`);
          }
        }
        if (errors.length > 0) throw new QubesError(errors.join('\n'), type);
        return 0;
      }),
    );

  pool
    .command('usage')
    .alias('u')
    .description("a pool's usage details (admin.pool.UsageDetails: data_size, data_usage, driver extras)")
    .argument('<name>')
    .action(
      action(io, async (ctx, command) => {
        const [name] = command.processedArgs as [string];
        await requirePools(ctx, [name]);
        const details = await ctx.client.pools.usageDetails(name);
        const keys = Object.keys(details).sort();
        if (ctx.json) {
          ctx.printJson(Object.fromEntries(keys.map((k) => [k, details[k]])));
          return 0;
        }
        ctx.print(formatTable(keys.map((k) => [k, String(details[k])])));
        return 0;
      }),
    );
}
