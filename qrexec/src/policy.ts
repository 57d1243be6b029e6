/** What the daemon asks the policy for one call (the lines of reference §4.2 "Policy socket"). */
export interface QrexecPolicyRequest {
  readonly source: string;
  /** The target as the caller named it (sanitised); the policy normalises it. */
  readonly target: string;
  readonly serviceAndArg: string;
  /** The source a caller asked to act as (qrexec-client-vm -s); absent when none. */
  readonly requestedSource?: string;
}

export type QrexecPolicyResolution =
  | {
      readonly result: 'allow';
      readonly user: string;
      /** Where the call runs: `dom0`, a qube name, or `@dispvm:NAME`. */
      readonly target: string;
      /** The normalised target the caller asked for; dom0 services see it. */
      readonly requestedTarget: string;
      readonly autostart: boolean;
    }
  | { readonly result: 'deny' };

/** The daemon's view of the policy engine. */
export type QrexecPolicy = (request: QrexecPolicyRequest) => Promise<QrexecPolicyResolution>;

/**
 * Reads the policy engine's `key=value` response lines (reference §1.3
 * step 5) with qrexec-daemon's rules: allow needs user, target,
 * requested_target and autostart; deny carries none of them.
 */
export function parsePolicyResponse(text: string): QrexecPolicyResolution {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`malformed policy response line: ${line}`);
    const key = line.slice(0, eq);
    if (fields.has(key)) throw new Error(`duplicate policy response key: ${key}`);
    fields.set(key, line.slice(eq + 1));
  }
  const allowKeys = ['user', 'target', 'requested_target', 'autostart'] as const;
  const result = fields.get('result');
  if (result === 'deny') {
    if (allowKeys.some((key) => fields.has(key))) throw new Error('policy denied with allow-only fields');
    return { result: 'deny' };
  }
  if (result !== 'allow') throw new Error(`policy response without a valid result: ${result ?? '(none)'}`);
  const [user, target, requestedTarget, autostart] = allowKeys.map((key) => {
    const value = fields.get(key);
    if (!value) throw new Error(`policy allowed without ${key}`);
    return value;
  }) as [string, string, string, string];
  if (autostart !== 'True' && autostart !== 'False') throw new Error(`bad autostart value: ${autostart}`);
  return { result: 'allow', user, target, requestedTarget, autostart: autostart === 'True' };
}

const DOM0_ALIASES = new Set(['dom0', '@adminvm', 'uuid:00000000-0000-0000-0000-000000000000']);

export function targetIsDom0(target: string): boolean {
  return DOM0_ALIASES.has(target);
}
