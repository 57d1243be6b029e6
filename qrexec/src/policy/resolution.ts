import { AccessDenied, formatLocation, type PolicyLocation } from './errors.js';
import type { RequestBase } from './request.js';
import { isDom0 } from './tokens.js';

interface Resolved {
  /** The rule that decided. */
  readonly origin: PolicyLocation;
  readonly request: RequestBase;
  readonly user: string | null;
  readonly autostart: boolean;
  readonly notify: boolean;
}

export interface AllowDecision extends Resolved {
  readonly result: 'allow';
  /** `dom0`, a qube name or uuid, or `@dispvm:TEMPLATE`. */
  readonly target: string;
}

export interface AskDecision extends Resolved {
  readonly result: 'ask';
  /** What the user may pick from, sorted. */
  readonly targets: readonly string[];
  readonly defaultTarget: string | null;
}

export interface DenyDecision {
  readonly result: 'deny';
  readonly reason: string;
  readonly notify: boolean;
  readonly origin: PolicyLocation | null;
}

export type PolicyDecision = AllowDecision | AskDecision | DenyDecision;

export function denyDecision(err: AccessDenied, origin: PolicyLocation | null = null): DenyDecision {
  return { result: 'deny', reason: err.message, notify: err.notify, origin };
}

/** The user's answer to an `ask`. Throws AccessDenied for a refusal or a target that was not offered. */
export function answerAsk(ask: AskDecision, approved: boolean, target: string): AllowDecision {
  if (!approved) throw new AccessDenied(`denied by the user ${formatLocation(ask.origin)}`, ask.notify);
  if (!ask.targets.includes(target)) throw new AccessDenied(`target ${target} is not a valid choice`);
  const { origin, request, user, autostart, notify } = ask;
  return { result: 'allow', origin, request, user, autostart, notify, target };
}

const py = (b: boolean): string => (b ? 'True' : 'False');

/**
 * The newline-separated reply qrexec-daemon expects for an allowed call.
 * Throws AccessDenied for calls that pass policy but cannot be executed
 * (a qube calling itself, a RemoteVM without relay).
 */
export function allowResponse(decision: AllowDecision): string {
  const { request, target, autostart } = decision;
  const { domains } = request;
  if (request.source === target) throw new AccessDenied('loopback qrexec connection not supported');
  const user = `user=${decision.user || 'DEFAULT'}`;
  const tail = [`autostart=${py(autostart)}`, `requested_target=${request.target}`];
  const policySource = request.requestedSource ? [`policy_source=${request.source}`] : [];

  if (isDom0(target)) return [user, 'result=allow', 'target=dom0', ...tail].join('\n');

  if (target.startsWith('@dispvm:')) {
    const info = domains.get(target.slice('@dispvm:'.length));
    if (!info) throw new AccessDenied(`unknown disposable template: ${target}`);
    return [
      user,
      'result=allow',
      `target=${target}`,
      `target_uuid=@dispvm:uuid:${info.uuid}`,
      ...tail,
      ...policySource,
    ].join('\n');
  }

  const info = domains.get(target);
  if (!info) throw new AccessDenied(`unknown target: ${target}`);
  if (info.type === 'RemoteVM') {
    // The relay runs the transport service as its own user; a policy user= cannot apply.
    if (!info.relayvm) throw new AccessDenied(`${target}: relayvm is not set`);
    if (!info.transport_rpc) throw new AccessDenied(`${target}: transport RPC is not set`);
    const relay = domains.get(info.relayvm);
    if (!relay) throw new AccessDenied(`${target}: unknown relayvm ${info.relayvm}`);
    return [
      'user=DEFAULT',
      'result=allow',
      `target=${info.relayvm}`,
      `target_uuid=uuid:${relay.uuid}`,
      ...tail,
      `service=${info.transport_rpc}+${request.target}+${request.service}${request.argument}`,
      ...policySource,
    ].join('\n');
  }
  return [
    user,
    'result=allow',
    `target=${target}`,
    `target_uuid=uuid:${info.uuid}`,
    ...tail,
    ...policySource,
  ].join('\n');
}

/**
 * Whether a target may be used by a rule with `autostart=no`: dom0 always
 * runs, a disposable would have to be started, anything else must be running.
 */
export function runningWithoutAutostart(target: string, request: RequestBase): boolean {
  if (isDom0(target)) return true;
  if (target.startsWith('@dispvm')) return false;
  return request.domains.get(target)?.power_state === 'Running';
}
