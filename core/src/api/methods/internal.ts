import type { App } from '../../model/app.js';
import type { Vm } from '../../model/vm.js';
import type { CallContext } from '../call-context.js';
import { P, VM_PROPS } from '../../model/vm-properties.js';

const nameOrNull = (v: Vm | null | undefined): string | null => v?.name ?? null;

/**
 * What the qrexec policy needs to know of every domain, in the shape of
 * upstream's internal.GetSystemInfo (admin-api-reference §2.3).
 */
export function systemInfo(app: App) {
  const domains: Record<string, unknown> = {};
  for (const vm of app.domains.list()) {
    const has = (p: string) => vm.props.has(p);
    domains[vm.name] = {
      internal: vm.features.get('internal') ?? null,
      tags: vm.tags.list(),
      type: vm.klass,
      template_for_dispvms: has('template_for_dispvms') ? vm.bool('template_for_dispvms') : false,
      default_dispvm: has('default_dispvm') ? nameOrNull(vm.props.tryGet(P.default_dispvm)) : null,
      icon: vm.props.tryGet(P.icon) ?? '',
      // Upstream's reply fails as a whole on a qube whose label was reset; here only its label is empty.
      label: vm.label?.color ?? '',
      guivm: has('guivm') ? nameOrNull(vm.props.tryGet(P.guivm)) : null,
      relayvm: has('relayvm') ? nameOrNull(vm.props.tryGet(VM_PROPS.RemoteVM.relayvm)) : null,
      transport_rpc: has('transport_rpc') ? (vm.props.tryGet(VM_PROPS.RemoteVM.transport_rpc) ?? null) : null,
      power_state: vm.shownPowerState,
      uuid: vm.uuid,
    };
  }
  return { domains };
}

export const internal = {
  getSystemInfo: (ctx: CallContext): string => JSON.stringify(systemInfo(ctx.app)),
};
