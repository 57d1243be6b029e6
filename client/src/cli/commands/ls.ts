import type { Command } from 'commander';

import type { VmInfo } from '../../api/vm-api.js';
import type { PropertyValue, TypedValue } from '../../properties.js';
import { typedValue } from '../../properties.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

const DEFAULT_COLUMNS = ['NAME', 'STATE', 'CLASS', 'LABEL', 'TEMPLATE', 'NETVM'];
/** Columns answered from `admin.vm.List` alone; any other column is a property of that name. */
const LIST_COLUMNS: Readonly<Record<string, (vm: VmInfo) => string>> = {
  NAME: (vm) => vm.name,
  STATE: (vm) => vm.state,
  CLASS: (vm) => vm.klass,
};
const POWER_FILTERS = ['running', 'paused', 'halted'] as const;

interface LsOptions {
  rawList?: boolean;
  rawData?: boolean;
  fields?: string;
  running?: boolean;
  paused?: boolean;
  halted?: boolean;
  all?: boolean;
  exclude: string[];
  class?: string[];
  sort?: string;
  reverse?: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerLs(program: Command, io: CliIo): void {
  program
    .command('ls')
    .description('list qubes and their parameters (like qvm-ls)')
    .argument('[vm...]', 'only these qubes')
    .option('-O, --fields <columns>', 'comma-separated columns (NAME, STATE, CLASS or any property)')
    .option('--raw-data', 'print rows as |-separated values without a header')
    .option('--raw-list', 'same as --raw-data --fields=name')
    .option('--running', 'show running qubes')
    .option('--paused', 'show paused qubes')
    .option('--halted', 'show halted qubes')
    .option('--all', 'every qube, dom0 included (the default without names)')
    .option('--exclude <vm>', 'with --all, leave this qube out (repeatable)', collect, [])
    .option('--class <class...>', 'only qubes of these classes')
    .option('--sort <column>', 'sort the table on this column rather than NAME')
    .option('--reverse', 'sort in reverse order')
    .action(action(io, (ctx, command) => list(ctx, command.processedArgs[0] as string[], command.opts())));
}

async function list(ctx: CliContext, names: string[], options: LsOptions): Promise<number> {
  const rawData = options.rawData || options.rawList;
  const columns = options.rawList
    ? ['NAME']
    : options.fields
      ? options.fields.split(',').map((c) => c.trim().toUpperCase().replaceAll('_', '-'))
      : DEFAULT_COLUMNS;
  if (options.exclude.length > 0 && !options.all)
    throw new UsageError('--exclude can only be used with --all');
  if (options.all && names.length > 0) throw new UsageError('--all cannot be used with qube names');
  const propertyNames = columns.filter((c) => !(c in LIST_COLUMNS)).map(propertyOf);
  // Listing every qube with properties: one call where the server offers it, instead of one per qube.
  const bulk =
    names.length === 0 && propertyNames.length > 0
      ? await ctx.client.vms.listWithProperties(new Set(propertyNames))
      : undefined;
  const known = new Map(bulk?.map((entry) => [entry.vm.name, entry.properties]));
  const selected = bulk
    ? bulk.map((entry) => entry.vm)
    : names.length > 0
      ? await ctx.requireVms(names)
      : await ctx.listVms();
  const wanted = POWER_FILTERS.filter((state) => options[state]);
  const vms = selected
    .filter((vm) => wanted.length === 0 || (wanted as readonly string[]).includes(vm.state.toLowerCase()))
    .filter((vm) => !options.exclude.includes(vm.name))
    .filter((vm) => options.class === undefined || options.class.includes(vm.klass))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const rows: TypedValue[][] = [];
  for (const vm of vms) {
    const props: Map<string, PropertyValue> =
      propertyNames.length === 0
        ? new Map()
        : (known.get(vm.name) ??
          (await ctx.client.vmProperties(vm.name).getAllOrEach(async () => propertyNames)));
    rows.push(
      columns.map((column) => {
        const fromList = LIST_COLUMNS[column];
        if (fromList) return fromList(vm);
        const prop = props.get(propertyOf(column));
        return prop ? typedValue(prop) : undefined;
      }),
    );
  }

  if (ctx.json) {
    ctx.printJson(
      rows.map((row) => Object.fromEntries(columns.map((c, i) => [propertyOf(c), row[i] ?? null]))),
    );
    return 0;
  }
  const cells = rows.map((row) => row.map(cellText));
  if (rawData) {
    ctx.print(cells.map((row) => `${row.join('|')}\n`).join(''));
    return 0;
  }
  // Like upstream, only the table is sorted on another column, and only on one it shows.
  const sortIndex = columns.indexOf((options.sort ?? 'NAME').toUpperCase());
  const direction = options.reverse ? -1 : 1;
  if (sortIndex >= 0) cells.sort((a, b) => direction * compareCells(a[sortIndex] ?? '', b[sortIndex] ?? ''));
  ctx.print(formatTable([columns, ...cells]));
  return 0;
}

/** Numbers (memory, vcpus, ...) compare as numbers, anything else as text; the sort is stable. */
function compareCells(a: string, b: string): number {
  const [x, y] = [Number(a), Number(b)];
  if (a !== '' && b !== '' && Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return a < b ? -1 : a > b ? 1 : 0;
}

function propertyOf(column: string): string {
  return column.toLowerCase().replaceAll('-', '_');
}

/** Upstream shows '-' for anything absent, unset or empty. */
function cellText(value: TypedValue): string {
  if (value === undefined || value === null || value === '') return '-';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}
