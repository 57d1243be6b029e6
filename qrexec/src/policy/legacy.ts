import {
  AccessDenied,
  formatLocation,
  PolicyNotFound,
  PolicySyntaxError,
  type PolicyLocation,
} from './errors.js';
import { outcomeOf, type Outcome } from './evaluate.js';
import { nodePolicyFiles, type PolicyFiles } from './files.js';
import { LoadBudget } from './budget.js';
import { splitServiceName } from './parser.js';
import type { RequestBase } from './request.js';
import { denyDecision, type PolicyDecision } from './resolution.js';
import { indexSystemInfo, type DomainIndex, type SystemInfo } from './system-info.js';

/**
 * The Qubes R4.0 engine: one file per service (`<dir>/<service>+<arg>`, else
 * `<dir>/<service>`), lines `SOURCE TARGET ACTION[,opt=val...]`, `$` keywords,
 * `$include:PATH`. It has its own matching rules (dom0 only matches when named,
 * never through `$anyvm`, `$tag` or `$type`), so it is a separate engine
 * rather than a mode of the current one.
 */
export interface LegacyRule extends PolicyLocation {
  readonly source: string;
  readonly target: string;
  readonly action: 'allow' | 'deny' | 'ask';
  readonly overrideTarget: string | null;
  readonly user: string | null;
  readonly defaultTarget: string | null;
}

const nonEmptyAfter = (v: string, prefix: string): boolean =>
  v.startsWith(prefix) && v.length > prefix.length;

/** Which `@` keywords R4.0 accepts where: matching tokens, and tokens naming one specific target. */
function specialValueOk(value: string, forTarget: boolean, specific: boolean): boolean {
  if (!specific) {
    if (nonEmptyAfter(value, '@tag:') || nonEmptyAfter(value, '@type:')) return true;
    if (forTarget && nonEmptyAfter(value, '@dispvm:@tag:')) return true;
    if (value === '@anyvm') return true;
    if (forTarget && value === '@default') return true;
  }
  if (value === '@adminvm') return true;
  if (forTarget && value.startsWith('@dispvm:') && !value.startsWith('@dispvm:@')) return true;
  return forTarget && value === '@dispvm';
}

/** Parses one R4.0 line (after `$` → `@`). */
export function parseLegacyRule(line: string, where: PolicyLocation): LegacyRule {
  const m = /^\s*(\S+)\s+(\S+)\s+(\S[\s\S]*?)\s*$/.exec(line);
  if (!m) throw new PolicySyntaxError(where, 'wrong number of fields');
  const [, source = '', target = '', fullAction = ''] = m;
  const [action = '', ...params] = fullAction.replaceAll(',', ' ').trim().split(/\s+/);
  if (action !== 'allow' && action !== 'deny' && action !== 'ask')
    throw new PolicySyntaxError(where, `invalid action: ${action}`);
  let overrideTarget: string | null = null;
  let user: string | null = null;
  let defaultTarget: string | null = null;
  for (const param of params) {
    const parts = param.split('=');
    if (parts.length !== 2) throw new PolicySyntaxError(where, `invalid action parameter syntax: ${param}`);
    const [name, value = ''] = parts;
    if (name === 'target') {
      if (action === 'deny') throw new PolicySyntaxError(where, 'target= option not allowed for deny action');
      overrideTarget = value;
    } else if (name === 'user') {
      if (action === 'deny') throw new PolicySyntaxError(where, 'user= option not allowed for deny action');
      user = value;
    } else if (name === 'default_target') {
      if (action !== 'ask')
        throw new PolicySyntaxError(where, 'default_target= option allowed only for ask action');
      defaultTarget = value;
    } else {
      throw new PolicySyntaxError(where, `invalid option ${param} for ${action} action`);
    }
  }
  if (source.startsWith('@') && !specialValueOk(source, false, false))
    throw new PolicySyntaxError(where, `invalid source specification: ${source}`);
  if (target.startsWith('@') && !specialValueOk(target, true, false))
    throw new PolicySyntaxError(where, `invalid target specification: ${target}`);
  if (target === '@default' && action === 'allow' && overrideTarget === null)
    throw new PolicySyntaxError(where, 'allow action for @default rule must specify target= option');
  for (const v of [overrideTarget, defaultTarget]) {
    if (v !== null && v.startsWith('@') && !specialValueOk(v, true, true))
      throw new PolicySyntaxError(where, 'target= option needs to name specific target');
  }
  return { ...where, source, target, action, overrideTarget, user, defaultTarget };
}

function validTarget(domains: DomainIndex, value: string | null): value is string {
  if (value === null) return false;
  if (value === '@dispvm' || value === '@adminvm') return true;
  if (value.startsWith('@dispvm:'))
    return domains.get(value.slice('@dispvm:'.length))?.template_for_dispvms ?? false;
  return domains.has(value);
}

function matchSingle(domains: DomainIndex, policyValue: string, value: string): boolean {
  // A caller that named no target is matched only by @default and @anyvm.
  if (value === '@default') return policyValue === '@default' || policyValue === '@anyvm';
  if (!validTarget(domains, value)) return false;
  const pv = policyValue === 'dom0' ? '@adminvm' : policyValue;
  const v = value === 'dom0' ? '@adminvm' : value;
  if (pv === '@anyvm') return v !== '@adminvm';
  if (v === pv) return true;
  if (pv.startsWith('@dispvm:@tag:') && v.startsWith('@dispvm:')) {
    return domains.get(v.slice('@dispvm:'.length))?.tags.includes(pv.slice('@dispvm:@tag:'.length)) ?? false;
  }
  if (v.startsWith('@dispvm:') || v === '@adminvm') return false;
  const domain = domains.get(v);
  if (!domain) return false;
  if (pv.startsWith('@tag:')) return domain.tags.includes(pv.slice('@tag:'.length));
  if (pv.startsWith('@type:')) return domain.type === pv.slice('@type:'.length);
  return false;
}

function defaultDispvm(domains: DomainIndex, source: string): string | null {
  const template = domains.get(source)?.default_dispvm;
  return template ? `@dispvm:${template}` : null;
}

function ruleMatches(domains: DomainIndex, rule: LegacyRule, source: string, target: string): boolean {
  if (!matchSingle(domains, rule.source, source)) return false;
  // A bare @dispvm rule matches only a bare @dispvm call, not the default template it stands for.
  if (rule.target === '@dispvm' && target === '@dispvm') return true;
  let t = target;
  if (t === '@dispvm') {
    const resolved = defaultDispvm(domains, source);
    if (resolved === null) return rule.target === '@anyvm';
    t = resolved;
  }
  return matchSingle(domains, rule.target, t);
}

function expandTarget(domains: DomainIndex, target: string): string[] {
  const named = (pred: (name: string) => boolean) => domains.names.filter(pred);
  const info = (name: string) => domains.get(name);
  if (target.startsWith('@tag:')) return named((n) => info(n)?.tags.includes(target.slice(5)) ?? false);
  if (target.startsWith('@type:')) return named((n) => info(n)?.type === target.slice(6));
  if (target === '@anyvm') {
    const out: string[] = [];
    for (const n of domains.names) {
      if (n !== 'dom0') out.push(n);
      if (info(n)?.template_for_dispvms) out.push(`@dispvm:${n}`);
    }
    return [...out, '@dispvm'];
  }
  if (target.startsWith('@dispvm:@tag:')) {
    const tag = target.slice('@dispvm:@tag:'.length);
    return named((n) => (info(n)?.template_for_dispvms && info(n)?.tags.includes(tag)) ?? false).map(
      (n) => `@dispvm:${n}`,
    );
  }
  if (target.startsWith('@dispvm:')) return info(target.slice(8))?.template_for_dispvms ? [target] : [];
  if (target === '@adminvm' || target === '@dispvm') return [target];
  return domains.has(target) ? [target] : [];
}

export class LegacyPolicy {
  constructor(
    /** The call name the policy was loaded for, `SERVICE[+ARG]`. */
    readonly call: string,
    readonly rules: readonly LegacyRule[],
  ) {}

  /**
   * Reads the policy for one call from an R4.0 policy directory. Throws
   * PolicyNotFound when no file applies, PolicySyntaxError for a bad line.
   */
  static load(dir: string, call: string, files: PolicyFiles = nodePolicyFiles): LegacyPolicy {
    const [service] = splitServiceName(call);
    const candidates = [files.resolve(dir, call), files.resolve(dir, service)];
    const budget = new LoadBudget(files);
    const file = candidates.find((f) => budget.read(f, { file: f, line: null }) !== undefined);
    if (file === undefined) throw new PolicyNotFound(call);
    const rules: LegacyRule[] = [];
    const load = (path: string, from: PolicyLocation | null): void =>
      budget.withFile(path, from, (text) =>
        text.split(/\r\n|\r|\n/).forEach((raw, i) => {
          const where = { file: path, line: i + 1 };
          const line = raw.trim().replaceAll('$', '@');
          if (line.length === 0 || line.startsWith('#')) return;
          if (line.startsWith('@include:')) load(files.resolve(dir, line.slice('@include:'.length)), where);
          else rules.push(parseLegacyRule(line, where));
        }),
      );
    load(file, null);
    return new LegacyPolicy(call, rules);
  }

  /** Decides one call from `source`; refusals come back as deny decisions. */
  evaluate(source: string, target: string, systemInfo: SystemInfo): PolicyDecision {
    const domains = indexSystemInfo(systemInfo);
    let intended = target === '' ? '@default' : target;
    // Unknown names become @default so callers cannot probe which qubes exist.
    if (!intended.startsWith('@') && !domains.has(intended)) intended = '@default';
    const [service, argument] = splitServiceName(this.call);
    const request: RequestBase = {
      service,
      argument,
      source,
      target: intended,
      requestedSource: null,
      domains,
    };
    const rule = this.rules.find((r) => ruleMatches(domains, r, source, intended));
    if (!rule) return denyDecision(new AccessDenied('no matching rule found'));
    const origin = { file: rule.file, line: rule.line };
    const where = formatLocation(rule);
    const deny = (message: string) => denyDecision(new AccessDenied(message), origin);
    if (rule.action === 'deny') return deny(`denied by policy ${where}`);

    let actual = intended;
    if (rule.overrideTarget !== null) {
      const override =
        rule.overrideTarget === '@dispvm' ? defaultDispvm(domains, source) : rule.overrideTarget;
      if (!validTarget(domains, override)) return deny(`invalid target= value in ${where}`);
      actual = override;
    }
    const common = { origin, request, user: rule.user, autostart: true, notify: false };
    if (rule.action === 'ask') {
      const targets = rule.overrideTarget !== null ? [actual] : this.collectTargetsForAsk(domains, source);
      if (targets.length === 0)
        return deny(`policy define 'ask' action at ${where} but no target is available to choose from`);
      const defaultTarget =
        rule.defaultTarget !== null && targets.includes(rule.defaultTarget) ? rule.defaultTarget : null;
      return { result: 'ask', ...common, targets, defaultTarget };
    }
    if (actual === '@default')
      return deny(`policy define 'allow' action at ${where} but no target is specified by caller or policy`);
    if (actual === '@dispvm') {
      const resolved = defaultDispvm(domains, source);
      if (resolved === null)
        return deny(
          `policy define 'allow' action to @dispvm at ${where} but no DispVM base is set for this VM`,
        );
      actual = resolved;
    }
    return { result: 'allow', ...common, target: actual === '@adminvm' ? 'dom0' : actual };
  }

  private collectTargetsForAsk(domains: DomainIndex, source: string): string[] {
    const targets = new Set<string>();
    for (const rule of [...this.rules].reverse()) {
      if (!matchSingle(domains, rule.source, source)) continue;
      if (rule.action === 'deny') {
        for (const t of expandTarget(domains, rule.target)) targets.delete(t);
      } else if (rule.overrideTarget !== null) {
        const override =
          rule.overrideTarget === '@dispvm' ? defaultDispvm(domains, source) : rule.overrideTarget;
        if (validTarget(domains, override)) targets.add(rule.overrideTarget);
      } else {
        for (const t of expandTarget(domains, rule.target)) targets.add(t);
      }
    }
    if (targets.delete('@dispvm')) {
      const dispvm = defaultDispvm(domains, source);
      if (validTarget(domains, dispvm)) targets.add(dispvm);
    }
    if (targets.delete('@adminvm')) targets.add('dom0');
    targets.delete(source);
    return [...targets].sort();
  }
}

/** Loads and evaluates one call with the R4.0 engine; load failures deny. */
export function decideLegacy(
  dir: string,
  call: { source: string; target: string; call: string },
  systemInfo: SystemInfo,
  files: PolicyFiles = nodePolicyFiles,
): Outcome {
  try {
    return outcomeOf(LegacyPolicy.load(dir, call.call, files).evaluate(call.source, call.target, systemInfo));
  } catch (err) {
    if (err instanceof AccessDenied) return outcomeOf(denyDecision(err));
    return outcomeOf(denyDecision(new AccessDenied(`failed to load policy: ${(err as Error).message}`)));
  }
}
