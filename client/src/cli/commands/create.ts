import type { Command } from 'commander';

import { QubesError } from '../../errors.js';
import { action } from '../context.js';
import { UsageError, type CliIo } from '../io.js';

interface CreateOptions {
  class: string;
  label?: string;
  template?: string;
  standalone?: boolean;
  disp?: boolean;
  P?: string;
  pool: string[];
  property: string[];
  helpClasses?: boolean;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Splits `key=value` on the first '='. */
function keyValue(text: string, what: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0)
    throw new UsageError(`${what} must be of the form ${what === 'pool' ? 'VOLUME=POOL' : 'NAME=VALUE'}`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

export function registerCreate(program: Command, io: CliIo): void {
  program
    .command('create')
    .description('create a new qube (like qvm-create)')
    .argument('[name]')
    .option('-C, --class <class>', 'class of the new qube', 'AppVM')
    .option('-l, --label <label>', 'label (colour) of the new qube; mandatory')
    .option('-t, --template <template>', 'template to base the qube on')
    .option('--standalone', 'same as --class StandaloneVM')
    .option('--disp', 'same as --class DispVM, with label red unless given')
    .option('-P <pool>', 'put every volume in this pool')
    .option('-p, --pool <volume=pool>', 'put one volume in a given pool (repeatable)', collect, [])
    .option('--prop, --property <name=value>', 'set a property once created (repeatable)', collect, [])
    .option('--help-classes', 'list the available qube classes and exit')
    .action(
      action(io, async (ctx, command) => {
        const [name] = command.processedArgs as [string?];
        const opts = command.opts<CreateOptions>();
        if (opts.helpClasses) {
          const classes = await ctx.client.vms.listClasses();
          if (ctx.json) ctx.printJson(classes);
          else ctx.printLine(classes.join('\n'));
          return 0;
        }
        const klass = opts.disp ? 'DispVM' : opts.standalone ? 'StandaloneVM' : opts.class;
        const label = opts.label ?? (opts.disp ? 'red' : undefined);
        if (label === undefined) throw new UsageError('--label option is mandatory');
        if (name === undefined) throw new UsageError('VMNAME is mandatory');
        if (opts.P !== undefined && opts.pool.length > 0) {
          throw new UsageError('-P and --pool cannot be combined');
        }
        const pools =
          opts.pool.length > 0 ? Object.fromEntries(opts.pool.map((p) => keyValue(p, 'pool'))) : undefined;
        const properties = opts.property.map((p) => keyValue(p, 'property'));

        const labels = await ctx.client.labels.list();
        if (!labels.includes(label)) {
          throw new UsageError(`no such label: '${label}'; available: ${labels.join(', ')}`);
        }
        try {
          await ctx.client.vms.create({
            klass,
            name,
            label,
            ...(opts.template === undefined ? {} : { template: opts.template }),
            ...(opts.P === undefined ? {} : { pool: opts.P }),
            ...(pools === undefined ? {} : { pools }),
          });
        } catch (err) {
          if (!(err instanceof QubesError)) throw err;
          ctx.printError(`Error creating VM: ${err.message}`);
          return 1;
        }
        // Exit status 2 for "created, but not quite as asked", as upstream does.
        let status = 0;
        for (const [prop, value] of properties) {
          try {
            await ctx.client.vmProperties(name).set(prop, value);
          } catch (err) {
            if (!(err instanceof QubesError)) throw err;
            ctx.printError(`Error setting property ${prop} (but VM created): ${err.message}`);
            status = 2;
          }
        }
        return status;
      }),
    );
}
