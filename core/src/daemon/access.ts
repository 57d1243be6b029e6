import type { CallContext } from '../api/call-context.js';
import type { AccessControl } from '../api/services.js';
import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';

/** "Would qrexec policy allow SOURCE to call SERVICE+ARGUMENT on TARGET?" */
export type PolicyCheck = (service: string, argument: string, source: string, target: string) => boolean;

/**
 * Upstream's AdminExtension filters: callers other than dom0 see in
 * admin.vm.List only the VMs the policy would let them list, and on
 * admin.Events only the events the policy lets them receive. dom0 sees all.
 */
export class PolicyAccess implements AccessControl {
  constructor(private readonly check: PolicyCheck | null) {}

  vmVisible(ctx: CallContext, vm: Vm): boolean {
    const check = this.check;
    if (ctx.src.isAdminVm || !check) return true;
    return check('admin.vm.List', `+${ctx.arg}`, ctx.src.name, vm.name);
  }

  eventVisible(ctx: CallContext, event: QubesEvent): boolean {
    const check = this.check;
    if (ctx.src.isAdminVm || !check) return true;
    const target = event.subject?.name ?? event.args.find(([k]) => k === 'vm')?.[1] ?? '@adminvm';
    return check('admin.Events', `+${event.name.replaceAll(':', '_')}`, ctx.src.name, target);
  }
}
