import { systemInfo } from '../api/methods/internal.js';
import type { App } from '../model/app.js';
import type { Log } from '../log.js';
import type { CallInit, LoadResult, Outcome, PolicyStore, SystemInfo } from '@odyssey/qrexec';

/**
 * What the policy store's loads tell the administrator: every failed load
 * (from then on every qrexec call and every non-dom0 admin call is denied),
 * and the load that ends such a period.
 */
export function policyLoadLog(log: Log): (result: LoadResult) => void {
  let failing = false;
  return (result) => {
    if (result.error) log('error', `qrexec policy not loaded, denying every call: ${result.error.message}`);
    else if (failing) log('info', 'qrexec policy loaded again');
    failing = result.error !== null;
  };
}

/**
 * The daemon's qrexec policy over its own domains: what the admin API's
 * filters and the qrexec daemons ask. One system-info snapshot serves every
 * question of the same event-loop turn (a List filters many VMs against the
 * same state).
 */
export class AppPolicy {
  private info: SystemInfo | null = null;

  constructor(
    private readonly store: PolicyStore,
    private readonly app: App,
  ) {}

  evaluate(call: CallInit): Outcome {
    return this.store.evaluate(call, this.snapshot());
  }

  /** Would the policy allow SOURCE to call SERVICE+ARGUMENT on TARGET? */
  allows(service: string, argument: string, source: string, target: string): boolean {
    return this.evaluate({ source, target, call: `${service}${argument}` }).decision.result === 'allow';
  }

  private snapshot(): SystemInfo {
    if (!this.info) {
      this.info = systemInfo(this.app) as SystemInfo;
      queueMicrotask(() => (this.info = null));
    }
    return this.info;
  }
}
