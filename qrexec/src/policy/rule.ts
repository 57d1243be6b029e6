import { PolicySyntaxError, quote, type PolicyLocation } from './errors.js';
import { parseToken, type VmToken } from './tokens.js';

export type RuleAction =
  | { readonly type: 'deny'; readonly notify: boolean }
  | {
      readonly type: 'allow';
      readonly target: VmToken | null;
      readonly user: string | null;
      readonly notify: boolean;
      readonly autostart: boolean;
    }
  | {
      readonly type: 'ask';
      readonly target: VmToken | null;
      readonly defaultTarget: VmToken | null;
      readonly user: string | null;
      readonly notify: boolean;
      readonly autostart: boolean;
    };

export type ActionType = RuleAction['type'];

/** One policy line. `service`/`argument` null mean `*`. */
export interface Rule extends PolicyLocation {
  readonly service: string | null;
  readonly argument: string | null;
  readonly source: VmToken;
  readonly target: VmToken;
  readonly action: RuleAction;
}

const SERVICE_CHARS = /[^A-Za-z0-9._-]/g;
const ARGUMENT_CHARS = /[^A-Za-z0-9+._-]/g;

function invalidChars(s: string, re: RegExp): string[] {
  return [...new Set(s.match(re) ?? [])].sort();
}

/** Checks a SERVICE/ARGUMENT pair as written in policy; returns them with `*` mapped to null. */
export function validateServiceAndArgument(
  service: string,
  argument: string,
  where: PolicyLocation,
): { service: string | null; argument: string | null } {
  const svc = service === '*' ? null : service;
  if (svc !== null) {
    const bad = invalidChars(svc, SERVICE_CHARS);
    if (bad.length > 0)
      throw new PolicySyntaxError(
        where,
        `service ${quote(svc)} contains invalid characters: ${bad.join(' ')}`,
      );
  }
  const arg = argument === '*' ? null : argument;
  if (arg !== null) {
    const bad = invalidChars(arg, ARGUMENT_CHARS);
    if (bad.length > 0)
      throw new PolicySyntaxError(
        where,
        `argument ${quote(arg)} contains invalid characters: ${bad.join(' ')}`,
      );
    if (!arg.startsWith('+'))
      throw new PolicySyntaxError(where, `argument ${quote(arg)} does not start with +`);
    if (svc === null) throw new PolicySyntaxError(where, 'only * argument allowed for * service');
  }
  return { service: svc, argument: arg };
}

const PARAMS_FOR: Readonly<Record<ActionType, readonly string[]>> = {
  deny: ['notify'],
  allow: ['target', 'user', 'notify', 'autostart'],
  ask: ['target', 'default_target', 'user', 'notify', 'autostart'],
};

function isAction(s: string): s is ActionType {
  return s === 'allow' || s === 'deny' || s === 'ask';
}

function parseAction(action: string, params: readonly string[], where: PolicyLocation): RuleAction {
  if (!isAction(action)) throw new PolicySyntaxError(where, `invalid action: ${action}`);
  const values = new Map<string, string>();
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) throw new PolicySyntaxError(where, `invalid action parameter syntax: ${quote(param)}`);
    const key = param.slice(0, eq);
    if (values.has(key)) throw new PolicySyntaxError(where, `parameter given twice: ${quote(key)}`);
    values.set(key, param.slice(eq + 1));
  }
  const flag = (key: string, fallback: boolean): boolean => {
    const v = values.get(key);
    if (v === undefined) return fallback;
    if (v !== 'yes' && v !== 'no')
      throw new PolicySyntaxError(where, `${quote(key)} is ${quote(v)}, but can be only 'yes' or 'no'`);
    return v === 'yes';
  };
  // Booleans are checked before the key set, as upstream does, so the error names the bad value.
  const notify = flag('notify', action === 'deny');
  const autostart = flag('autostart', true);
  const allowed = PARAMS_FOR[action];
  for (const key of values.keys()) {
    if (!allowed.includes(key))
      throw new PolicySyntaxError(where, `invalid parameters for action ${action}: ${params.join(' ')}`);
  }
  if (action === 'deny') return { type: 'deny', notify };
  const redirect = (key: string): VmToken | null => {
    const v = values.get(key);
    return v === undefined ? null : parseToken(v, 'redirect', where);
  };
  const target = redirect('target');
  const user = values.get('user') ?? null;
  if (action === 'allow') return { type: 'allow', target, user, notify, autostart };
  return { type: 'ask', target, defaultTarget: redirect('default_target'), user, notify, autostart };
}

/** Builds a rule from its already split fields, enforcing every check of the grammar. */
export function buildRule(
  service: string,
  argument: string,
  source: string,
  target: string,
  action: string,
  params: readonly string[],
  where: PolicyLocation,
): Rule {
  const sa = validateServiceAndArgument(service, argument, where);
  const rule: Rule = {
    service: sa.service,
    argument: sa.argument,
    source: parseToken(source, 'source', where),
    target: parseToken(target, 'target', where),
    action: parseAction(action, params, where),
    file: where.file,
    line: where.line,
  };
  if (rule.target.kind === 'default' && rule.action.type === 'allow' && rule.action.target === null) {
    throw new PolicySyntaxError(where, 'allow action for @default rule must specify target= option');
  }
  return rule;
}

/** Splits on whitespace as Python's str.split() does (no empty fields). */
export function splitFields(line: string): string[] {
  const trimmed = line.trim();
  return trimmed.length === 0 ? [] : trimmed.split(/\s+/);
}

/** A line of the current format: `SERVICE ARGUMENT SOURCE TARGET ACTION [KEY=VALUE ...]`. */
export function parseRuleLine(line: string, where: PolicyLocation): Rule {
  const [service, argument, source, target, action, ...params] = splitFields(line);
  if (
    action === undefined ||
    service === undefined ||
    argument === undefined ||
    source === undefined ||
    target === undefined
  )
    throw new PolicySyntaxError(where, 'wrong number of fields');
  return buildRule(service, argument, source, target, action, params, where);
}

/**
 * A line of an `!include-service` file, bound to one service and argument:
 * `SOURCE TARGET ACTION [params]`, where commas also separate the action
 * from its parameters (the 4.0 spelling `allow,target=dom0`).
 */
export function parseServiceRuleLine(
  service: string,
  argument: string,
  line: string,
  where: PolicyLocation,
): Rule {
  const [source, target, ...rest] = splitFields(line);
  if (source === undefined || target === undefined)
    throw new PolicySyntaxError(where, 'wrong number of fields');
  const [action, ...params] = rest.flatMap((p) => p.split(','));
  if (action === undefined) throw new PolicySyntaxError(where, 'wrong number of fields');
  return buildRule(service, argument, source, target, action, params, where);
}

/** The rule in the current syntax, tab separated, for logs and tooling. */
export function formatRule(rule: Rule): string {
  const a = rule.action;
  let action: string = a.type;
  if (a.type !== 'deny') {
    if (a.target) action += ` target=${a.target.text}`;
    if (a.type === 'ask' && a.defaultTarget) action += ` default_target=${a.defaultTarget.text}`;
    if (a.user) action += ` user=${a.user}`;
  }
  return [rule.service ?? '*', rule.argument ?? '*', rule.source.text, rule.target.text, action].join('\t');
}
