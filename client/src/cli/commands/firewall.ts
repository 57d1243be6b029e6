import type { Command } from 'commander';

import { FirewallRule, FirewallRuleError } from '../../firewall-rule.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { formatTable } from '../table.js';

interface FirewallOptions {
  raw?: boolean;
  reload?: boolean;
  before?: string;
  ruleNo?: string;
}

export function registerFirewall(program: Command, io: CliIo): void {
  program
    .command('firewall')
    .description("list or edit a qube's firewall rules (like qvm-firewall)")
    .argument('<vm>')
    .argument('[action]', 'list (default), add, del or reset')
    .argument(
      '[match...]',
      'rule: <action> [<dsthost> [<proto> [<dstports>|<icmptype>]]] and/or key=value ' +
        '(action, dsthost/dst4/dst6, proto, dstports, icmptype, specialtarget, expire=[+]N, comment)',
    )
    .option('--raw', 'print rules in API syntax instead of a table')
    .option('-r, --reload', 'force a reload of the rules (with list)')
    .option('--before <n>', 'add: insert before rule number n instead of appending')
    .option('--rule-no <n>', 'del: remove the rule with this number')
    .action(
      action(io, async (ctx, command) => {
        const [vm, mode = 'list', match] = command.processedArgs as [string, string | undefined, string[]];
        const opts = command.opts<FirewallOptions>();
        if (!['list', 'add', 'del', 'reset'].includes(mode)) {
          throw new UsageError(`invalid action: '${mode}' (choose from list, add, del, reset)`);
        }
        await ctx.requireVm(vm);
        const firewall = ctx.client.firewall;
        if (mode === 'reset') {
          await firewall.set(vm, ['action=accept']);
          return 0;
        }
        const rules = (await firewall.get(vm)).map((line) => FirewallRule.parse(line));
        if (mode === 'list') {
          printRules(ctx, rules, opts.raw ?? false);
          if (opts.reload) await firewall.reload(vm);
          return 0;
        }
        if (mode === 'add') {
          const rule = ruleFromArgs(match);
          const at = opts.before === undefined ? rules.length : parseIndex(opts.before, rules.length + 1);
          rules.splice(at, 0, rule);
        } else if (opts.ruleNo !== undefined) {
          rules.splice(parseIndex(opts.ruleNo, rules.length), 1);
        } else {
          const rule = ruleFromArgs(match);
          const at = rules.findIndex((r) => r.equals(rule));
          if (at < 0) throw new UsageError(`no such rule: ${rule.toString()}`);
          rules.splice(at, 1);
        }
        await firewall.set(
          vm,
          rules.map((r) => r.toString()),
        );
        return 0;
      }),
    );
}

function printRules(ctx: CliContext, rules: FirewallRule[], raw: boolean): void {
  if (ctx.json) {
    ctx.printJson(
      rules.map((r) => ({
        rule: r.toString(),
        action: r.action,
        dsthost: r.dsthost ?? null,
        proto: r.proto ?? null,
        dstports: r.dstports ?? null,
        specialtarget: r.specialtarget ?? null,
        icmptype: r.icmptype ?? null,
        expire: r.expire ?? null,
        comment: r.comment ?? null,
      })),
    );
    return;
  }
  if (raw) {
    ctx.print(rules.map((r) => `${r.toString()}\n`).join(''));
    return;
  }
  const header = [
    'NO',
    'ACTION',
    'HOST',
    'PROTOCOL',
    'PORT(S)',
    'SPECIAL TARGET',
    'ICMP TYPE',
    'EXPIRE',
    'COMMENT',
  ];
  const now = Date.now() / 1000;
  const rows = rules.map((r, i) =>
    [
      String(i),
      r.action,
      r.dsthost,
      r.proto,
      r.dstports,
      r.specialtarget,
      r.icmptype?.toString(),
      r.expire === undefined ? undefined : relativeSeconds(r.expire - now),
      r.comment,
    ].map((cell) => cell ?? '-'),
  );
  ctx.print(formatTable([header, ...rows]));
}

function relativeSeconds(seconds: number): string {
  const rounded = Math.round(seconds);
  return `${rounded >= 0 ? '+' : ''}${rounded}s`;
}

function parseIndex(text: string, limit: number): number {
  const index = Number(text);
  if (!/^\d+$/.test(text) || index >= limit) throw new UsageError(`invalid rule number: ${text}`);
  return index;
}

/**
 * Builds a rule from qvm-firewall's command-line syntax: bare words fill, in order, whichever of
 * action, dsthost, proto, dstports/icmptype are still unset; `key=value` words set that key.
 */
export function ruleFromArgs(words: readonly string[]): FirewallRule {
  if (words.length === 0) throw new UsageError('a rule description is required');
  const positional = ['action', 'dsthost', 'proto', 'dstports', 'icmptype'];
  const allowed = new Set([...positional, 'specialtarget', 'comment', 'expire']);
  const fields: Record<string, string> = {};
  for (const word of words) {
    const parts = word.split('=');
    if (word.endsWith('=') || parts.length > 2) throw new UsageError(`invalid rule description: ${word}`);
    let [key, value] = parts.length === 2 ? (parts as [string, string]) : [positional[0], word];
    if (key === undefined || value === undefined) throw new UsageError(`invalid rule description: ${word}`);
    if (key === 'dst4' || key === 'dst6') key = 'dsthost';
    if (!allowed.has(key)) throw new UsageError(`Invalid rule element: ${word}`);
    if (key === 'expire' && value.startsWith('+')) {
      value = String(Math.floor(Date.now() / 1000) + Number(value.slice(1)));
    }
    fields[key] = value;
    const drop = [key];
    if (key === 'proto') drop.push(value === 'icmp' ? 'dstports' : 'icmptype');
    for (const k of drop) {
      const at = positional.indexOf(k);
      if (at >= 0) positional.splice(at, 1);
    }
  }
  try {
    return new FirewallRule(fields);
  } catch (err) {
    if (err instanceof FirewallRuleError) throw new UsageError(err.message);
    throw err;
  }
}
