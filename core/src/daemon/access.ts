import type { CallContext } from '../api/call-context.js';
import type { AccessControl } from '../api/services.js';
import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';
import type { AppPolicy } from './app-policy.js';

/**
 * Upstream's AdminExtension filters: callers other than dom0 see in
 * admin.vm.List only the VMs the policy would let them list, and on
 * admin.Events only the events the policy lets them receive. dom0 sees all.
 */
export class PolicyAccess implements AccessControl {
  /** Without a policy nothing is filtered. */
  constructor(
    private readonly policy: AppPolicy | null,
    private readonly strictManagement = false,
  ) {}

  vmVisible(ctx: CallContext, vm: Vm): boolean {
    if (ctx.src.isAdminVm || !this.policy) return true;
    return this.policy.allows('admin.vm.List', `+${ctx.arg}`, ctx.src.name, vm.name);
  }

  /**
   * A bulk method answers for many qubes in one call: each qube's part only
   * when the per-qube method it stands for would have been allowed.
   */
  mayCall(ctx: CallContext, method: string, vm: Vm): boolean {
    if (ctx.src.isAdminVm || !this.policy) return true;
    return this.policy.allows(method, '+', ctx.src.name, vm.name);
  }

  /**
   * Under strict management, what a caller can make its qubes depend on is what
   * it could list: upstream lets a management qube name any qube as netvm or
   * template, so one that sees only its own qubes can still make dom0 start
   * foreign ones by chaining netvms.
   */
  mayReference(ctx: CallContext, vm: Vm): boolean {
    if (!this.strictManagement || ctx.src.isAdminVm || !this.policy) return true;
    return this.policy.allows('admin.vm.List', '+', ctx.src.name, vm.name);
  }

  eventVisible(ctx: CallContext, event: QubesEvent): boolean {
    if (ctx.src.isAdminVm || !this.policy) return true;
    const target = event.subject?.name ?? ('vm' in event.args ? event.args.vm : undefined) ?? '@adminvm';
    return this.policy.allows('admin.Events', `+${event.name.replaceAll(':', '_')}`, ctx.src.name, target);
  }
}
