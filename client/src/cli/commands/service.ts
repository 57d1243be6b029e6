import type { Command } from 'commander';

import { QubesFeatureNotFoundError, QubesValueError } from '../../errors.js';
import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

const PREFIX = 'service.';

/** Boolean words as qvm-service accepts them. */
function parseSwitch(value: string): boolean {
  const word = value.toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(word)) return false;
  if (['1', 'yes', 'true', 'on'].includes(word)) return true;
  throw new QubesValueError(`Invalid literal for boolean value: '${value}'`);
}

interface ServiceOptions {
  unset?: boolean;
  list?: boolean;
  enable?: boolean;
  disable?: boolean;
}

export function registerService(program: Command, io: CliIo): void {
  program
    .command('service')
    .description("list, show or switch a qube's services, i.e. service.* features (like qvm-service)")
    .argument('<vm>')
    .argument('[service]')
    .argument('[value]', 'on or off (also 1/0, yes/no, true/false)')
    .option('-D, --unset', 'unset the service (the qube then uses its own default)')
    .option('-l, --list', 'list services (the default action)')
    .option('-e, --enable', 'same as value "on"')
    .option('-d, --disable', 'same as value "off"')
    .action(
      action(io, async (ctx, command) => {
        const [vm, service, word] = command.processedArgs as [string, string?, string?];
        const opts = command.opts<ServiceOptions>();
        const value = opts.enable ? '1' : opts.disable ? '0' : word;
        await ctx.requireVm(vm);
        const features = ctx.client.features;
        if (service === undefined) {
          if (opts.unset) throw new UsageError('--unset requires a feature');
          // Only service.* features are read, as qvm-service does.
          const services: [string, boolean][] = [];
          for (const name of await features.list(vm)) {
            if (name.startsWith(PREFIX))
              services.push([name.slice(PREFIX.length), (await features.get(vm, name)) !== '']);
          }
          if (ctx.json) ctx.printJson(Object.fromEntries(services));
          else ctx.print(formatTable(services.map(([name, on]) => [name, on ? 'on' : 'off'])));
          return 0;
        }
        if (opts.unset) {
          if (value !== undefined) throw new UsageError('cannot both set and unset a value');
          try {
            await features.remove(vm, PREFIX + service);
          } catch (err) {
            if (!(err instanceof QubesFeatureNotFoundError)) throw err;
          }
          return 0;
        }
        if (value !== undefined) {
          await features.set(vm, PREFIX + service, parseSwitch(value));
          return 0;
        }
        const current = await features.find(vm, PREFIX + service);
        if (current === undefined) return 1;
        if (ctx.json) ctx.printJson(current !== '');
        else ctx.printLine(current !== '' ? 'on' : 'off');
        return 0;
      }),
    );
}
