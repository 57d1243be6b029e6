import { AccessDenied, formatLocation, type PolicyLocation } from './errors.js';
import { createRequest, type CallInit, type PolicyRequest } from './request.js';
import {
  allowResponse,
  denyDecision,
  runningWithoutAutostart,
  type AllowDecision,
  type AskDecision,
  type PolicyDecision,
} from './resolution.js';
import type { Rule } from './rule.js';
import type { SystemInfo } from './system-info.js';
import {
  defaultDispvmOf,
  expandToken,
  isDom0,
  nameToken,
  tokenMatches,
  verifyIntended,
  type VmToken,
} from './tokens.js';

/** A parsed policy: rules in load order, first match wins. */
export class Policy {
  private readonly named: ReadonlySet<string>;
  private readonly anyService: readonly Rule[];
  private readonly byService = new Map<string, readonly Rule[]>();

  constructor(readonly rules: readonly Rule[]) {
    this.named = new Set(rules.flatMap((r) => (r.service === null ? [] : [r.service])));
    this.anyService = rules.filter((r) => r.service === null);
  }

  /**
   * The rules that can apply to a service, in order. Lists are cached only for
   * services the policy names, so callers inventing service names cannot grow
   * the cache.
   */
  rulesFor(service: string): readonly Rule[] {
    if (!this.named.has(service)) return this.anyService;
    let rules = this.byService.get(service);
    if (!rules) {
      rules = this.rules.filter((r) => r.service === null || r.service === service);
      this.byService.set(service, rules);
    }
    return rules;
  }

  findMatchingRule(request: PolicyRequest): Rule | null {
    const source = nameToken(request.source);
    for (const rule of this.rulesFor(request.service)) {
      if (matchesButTarget(rule, request, source) && matchesTarget(rule, request)) return rule;
    }
    return null;
  }

  /** Decides a validated request; refusals come back as a deny decision, never as an exception. */
  evaluate(request: PolicyRequest): PolicyDecision {
    const rule = this.findMatchingRule(request);
    if (!rule) return denyDecision(new AccessDenied('no matching rule found'));
    try {
      switch (rule.action.type) {
        case 'deny':
          return denyDecision(
            new AccessDenied(`denied by policy ${formatLocation(rule)}`, rule.action.notify),
            locationOf(rule),
          );
        case 'allow':
          return evaluateAllow(rule, rule.action, request);
        case 'ask':
          return evaluateAsk(rule, rule.action, request, this);
      }
    } catch (err) {
      if (err instanceof AccessDenied) return denyDecision(err, locationOf(rule));
      throw err;
    }
  }

  /**
   * The targets an `ask` offers when the rule names none: every rule for this
   * service and source, walked from last to first, adds (allow/ask) or removes
   * (deny) the targets it covers, so earlier rules override later ones.
   */
  collectTargetsForAsk(request: PolicyRequest): string[] {
    const { domains, source } = request;
    const targets = new Set<string>();
    const rules = this.rulesFor(request.service);
    const sourceToken = nameToken(source);
    for (let i = rules.length - 1; i >= 0; i--) {
      const rule = rules[i];
      if (!rule || !matchesButTarget(rule, request, sourceToken)) continue;
      const token = (rule.action.type !== 'deny' && rule.action.target) || rule.target;
      const expansion = expandToken(token, domains)
        .map((t) => domains.toName(t))
        .filter((t) => t !== undefined);
      for (const t of expansion) {
        if (rule.action.type === 'deny') targets.delete(t);
        else targets.add(t);
      }
    }
    if (targets.delete('@dispvm')) {
      const dispvm = defaultDispvmOf(domains, source);
      if (dispvm !== null) targets.add(dispvm);
    }
    if (targets.delete('@adminvm')) targets.add('dom0');
    // A qube cannot call itself (qrexec has no loopback).
    const sourceInfo = domains.get(source);
    targets.delete(sourceInfo?.name ?? source);
    if (sourceInfo) targets.delete(`uuid:${sourceInfo.uuid}`);
    for (const t of targets) {
      const name = t.startsWith('@dispvm:') ? t.slice('@dispvm:'.length) : t;
      if (domains.get(name)?.internal) targets.delete(t);
    }
    return [...targets].sort();
  }
}

function locationOf(rule: Rule): PolicyLocation {
  return { file: rule.file, line: rule.line };
}

function matchesButTarget(rule: Rule, request: PolicyRequest, source: VmToken): boolean {
  return (
    (rule.service === null || rule.service === request.service) &&
    (rule.argument === null || rule.argument === request.argument) &&
    tokenMatches(rule.source, source, request)
  );
}

function matchesTarget(rule: Rule, request: PolicyRequest): boolean {
  return tokenMatches(rule.target, request.targetToken, request);
}

type AllowAction = Extract<Rule['action'], { type: 'allow' }>;
type AskAction = Extract<Rule['action'], { type: 'ask' }>;

function evaluateAllow(rule: Rule, action: AllowAction, request: PolicyRequest): AllowDecision {
  const where = formatLocation(rule);
  const chosen: VmToken = verifyIntended(action.target ?? request.targetToken, request.domains);
  let target: string;
  if (chosen.kind === 'default') {
    throw new AccessDenied(
      `policy define 'allow' action at ${where} but no target is specified by caller or policy`,
    );
  } else if (chosen.kind === 'dispvm') {
    const dispvm = defaultDispvmOf(request.domains, request.source);
    if (dispvm === null)
      throw new AccessDenied(
        `policy define 'allow' action to @dispvm at ${where} but no DispVM base is set for this VM`,
      );
    target = dispvm;
  } else {
    // `dom0` and `uuid:0…0` are kept as written; only the keyword is spelled out.
    target = chosen.kind === 'adminvm' ? 'dom0' : chosen.text;
  }
  if (!action.autostart && !runningWithoutAutostart(target, request)) {
    throw new AccessDenied(`target ${target} is denied because it would require autostart`, action.notify);
  }
  return {
    result: 'allow',
    origin: locationOf(rule),
    request,
    target,
    user: action.user,
    autostart: action.autostart,
    notify: action.notify,
  };
}

function evaluateAsk(rule: Rule, action: AskAction, request: PolicyRequest, policy: Policy): AskDecision {
  const { domains, source } = request;
  const resolve = (token: VmToken): string | null => {
    if (token.kind === 'dispvm') return defaultDispvmOf(domains, source);
    return isDom0(token.text) ? 'dom0' : token.text;
  };
  let targets: string[];
  if (action.target) {
    const only = resolve(action.target);
    targets = only === null ? [] : [only];
  } else {
    targets = policy.collectTargetsForAsk(request);
  }
  if (!action.autostart) targets = targets.filter((t) => runningWithoutAutostart(t, request));
  if (targets.length === 0) {
    throw new AccessDenied(
      `policy define 'ask' action at ${formatLocation(rule)} but no target is available to choose from`,
    );
  }
  let defaultTarget = action.defaultTarget ? resolve(action.defaultTarget) : null;
  // A default the user could not pick anyway is dropped rather than failing the call.
  if (defaultTarget !== null && !targets.includes(defaultTarget)) defaultTarget = null;
  return {
    result: 'ask',
    origin: locationOf(rule),
    request,
    targets,
    defaultTarget,
    user: action.user,
    autostart: action.autostart,
    notify: action.notify,
  };
}

/** A loaded policy, or the reason it could not be loaded (which denies every call). */
export type PolicyState =
  { readonly policy: Policy; readonly error: null } | { readonly policy: null; readonly error: AccessDenied };

export interface Outcome {
  readonly decision: PolicyDecision;
  /**
   * The reply for qrexec-daemon: the allow lines, `result=deny`, or null for
   * `ask` (the answer has to come from the user first).
   */
  readonly response: string | null;
}

/** Turns a decision into its qrexec-daemon reply; an allow that cannot execute becomes a deny. */
export function outcomeOf(decision: PolicyDecision): Outcome {
  if (decision.result === 'ask') return { decision, response: null };
  if (decision.result === 'deny') return { decision, response: 'result=deny' };
  try {
    return { decision, response: allowResponse(decision) };
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    return { decision: denyDecision(err, decision.origin), response: 'result=deny' };
  }
}

/**
 * The whole pipeline for one call, as qrexec-policy-daemon runs it: a policy
 * that failed to load denies, an invalid request denies, otherwise evaluate.
 */
export function decide(state: Policy | PolicyState, call: CallInit, systemInfo: SystemInfo): Outcome {
  let policy: Policy;
  if (state instanceof Policy) policy = state;
  else if (state.policy === null) return outcomeOf(denyDecision(state.error));
  else policy = state.policy;
  let request: PolicyRequest;
  try {
    request = createRequest(call, systemInfo);
  } catch (err) {
    if (err instanceof AccessDenied) return outcomeOf(denyDecision(err));
    throw err;
  }
  return outcomeOf(policy.evaluate(request));
}
