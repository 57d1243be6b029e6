import type { Command } from 'commander';

import type { PropertyApi } from '../api/property-api.js';
import { QubesNoSuchPropertyError } from '../errors.js';
import { displayValue, typedValue } from '../properties.js';
import type { CliContext } from './context.js';
import { UsageError } from './io.js';

export interface PropertyCommandOptions {
  default?: boolean;
  getDefault?: boolean;
  hideDefault?: boolean;
}

/** VM-valued properties for which the word "none" means "no VM" (as qvm-prefs treats them). */
const NONE_MEANS_EMPTY = new Set(['default_dispvm', 'netvm', 'template', 'guivm', 'audiovm']);

/** The options shared by `prefs` and `global-prefs`. */
export function withPropertyOptions(command: Command): Command {
  return command
    .option('-D, --default', 'reset the property to its default value')
    .option('--get-default', 'print the value the property would have after a reset')
    .option('--hide-default', 'do not show properties that are set to their default value')
    .option('-g, --get', 'ignored, as upstream does (for older scripts)')
    .option('-s, --set', 'ignored, as upstream does (for older scripts)');
}

/** List, show, set or reset properties of one holder, with qvm-prefs' behaviour and output. */
export async function runPropertyCommand(
  ctx: CliContext,
  api: PropertyApi,
  property: string | undefined,
  value: string | undefined,
  options: PropertyCommandOptions,
): Promise<number> {
  if (property === undefined) {
    if (options.default || options.getDefault) throw new UsageError('a property name is required');
    await listProperties(ctx, api, options);
    return 0;
  }
  const name = property.replaceAll('-', '_');
  try {
    if (value !== undefined) {
      if (options.default) throw new UsageError('cannot both set and reset a property');
      const payload = value.toLowerCase() === 'none' && NONE_MEANS_EMPTY.has(name) ? '' : value;
      await api.set(name, payload);
    } else if (options.default) {
      await api.reset(name);
    } else if (options.getDefault) {
      await showDefault(ctx, api, name);
    } else {
      await showProperty(ctx, api, name, options);
    }
  } catch (err) {
    if (err instanceof QubesNoSuchPropertyError) throw new UsageError(`no such property: '${name}'`);
    throw err;
  }
  return 0;
}

async function listProperties(
  ctx: CliContext,
  api: PropertyApi,
  options: PropertyCommandOptions,
): Promise<void> {
  const names = await api.list();
  const values = await api.getAllOrEach(async () => names);
  const sorted = [...names].sort();
  if (ctx.json) {
    const result: Record<string, unknown> = {};
    for (const name of sorted) {
      const prop = values.get(name);
      if (prop && options.hideDefault && prop.isDefault) continue;
      result[name] = prop
        ? { value: typedValue(prop) ?? null, default: prop.isDefault, type: prop.type }
        : null;
    }
    ctx.printJson(result);
    return;
  }
  const width = Math.max(0, ...names.map((n) => n.length));
  for (const name of sorted) {
    const prop = values.get(name);
    const shown = prop && displayValue(prop);
    if (!prop || shown === undefined) ctx.printLine(`${name.padEnd(width)}  U`);
    else if (!prop.isDefault) ctx.printLine(`${name.padEnd(width)}  -  ${shown}`);
    else if (!options.hideDefault) ctx.printLine(`${name.padEnd(width)}  D  ${shown}`);
  }
}

async function showProperty(
  ctx: CliContext,
  api: PropertyApi,
  name: string,
  options: PropertyCommandOptions,
): Promise<void> {
  const prop = await api.get(name);
  if (options.hideDefault && prop.isDefault) return;
  if (ctx.json) {
    ctx.printJson({ name, value: typedValue(prop) ?? null, default: prop.isDefault, type: prop.type });
    return;
  }
  // Upstream prints nothing at all (not even a newline) for a value of None.
  const value = typedValue(prop);
  if (value !== null && value !== undefined) ctx.printLine(displayValue(prop) ?? '');
}

async function showDefault(ctx: CliContext, api: PropertyApi, name: string): Promise<void> {
  const fallback = await api.getDefault(name);
  if (ctx.json) {
    ctx.printJson({
      name,
      value: fallback ? (typedValue(fallback) ?? null) : null,
      type: fallback?.type ?? null,
    });
    return;
  }
  const value = fallback && typedValue(fallback);
  if (fallback && value !== null && value !== undefined) ctx.printLine(displayValue(fallback) ?? '');
}
