import type { App } from './app.js';
import { QubesPropertyValueError, QubesValueError } from './errors.js';
import type { Decl, PropertyDef, PropValue } from './property.js';
import { declare, eventString, override } from './property.js';
import { intProp, boolProp, strProp, computed } from './property-types.js';
import type { Vm } from './vm.js';
import { TEMPLATE_VM, asVm, requireDispvmTemplate, vmProp } from './vm-ref.js';

/** Global (app) properties, all load stage 3 (admin-api-reference §3.5). */
type Def = PropertyDef<App>;
const self = (app: App) => app;
const stage3 = <T extends PropValue>(d: Decl<App, T>): Decl<App, T> => override(d, { stage: 3 });

function poolProp(help: string, dflt: (app: App) => string | null): Decl<App, string | null> {
  return stage3(
    strProp<App, null>(help, dflt, {
      validate: (app, v) => {
        if (typeof v !== 'string' || !app.pools.has(v))
          throw new QubesPropertyValueError('No such storage pool');
        return v;
      },
    }),
  );
}

function defaultPool(app: App): string | null {
  return app.pools.defaultPoolName() ?? null;
}

/**
 * Upstream's default_netvm setter: refused when the candidate is a qube that follows the default
 * netvm itself (templates included), or is downstream of one (in get_vms_connected_to). dom0 is
 * refused as a qube's netvm is: upstream takes it, then fails handing it to the qubes that follow
 * the default (dom0 has no connected addresses to reload), with the value set and an empty reply.
 */
function checkDefaultNetvm(app: App, candidate: Vm | null): void {
  if (!candidate) return;
  if (candidate.isAdminVm) throw new QubesValueError(`The ${candidate.name} qube does not provide network`);
  for (const vm of app.domains.list()) {
    if (!vm.props.has('netvm') || !vm.props.isDefault('netvm')) continue;
    if (candidate === vm || downstreamOf(app, vm).has(candidate)) {
      throw new QubesPropertyValueError(`Network loop on '${vm.name}'`);
    }
  }
}

/** Every qube whose network goes through NETVM, directly or through others. */
function downstreamOf(app: App, netvm: Vm): Set<Vm> {
  const found = new Set<Vm>();
  const todo = [netvm];
  for (let cur = todo.pop(); cur; cur = todo.pop()) {
    for (const vm of app.domains.list()) {
      if (vm.props.has('netvm') && vm.netvm === cur && !found.has(vm)) {
        found.add(vm);
        todo.push(vm);
      }
    }
  }
  return found;
}

/** VMs whose `prop` follows the global default, templates included, by name as upstream iterates them. */
function following(app: App, prop: string): Vm[] {
  return app.domains.sorted().filter((vm) => vm.props.has(prop) && vm.props.isDefault(prop));
}

/**
 * Upstream's fan-out of a changed global default (`global`) to the VMs whose `prop` follows it.
 * Upstream fans out default_guivm, default_audiovm and default_netvm on a Set only; a Reset that
 * changes the value is fanned out here too (so no qube keeps the old default's tags or network, a
 * documented deviation), one that changes nothing is not, as upstream. default_dispvm's handler
 * runs on every Set and Reset (`onEveryReset`).
 */
function fanOut(
  app: App,
  global: string,
  prop: string,
  event: 'property-set' | 'property-reset',
  old: PropValue | undefined,
  onEveryReset = false,
): void {
  const unchangedReset = app.props.isDefault(global) && (app.props.tryGet(global) ?? null) === (old ?? null);
  if (unchangedReset && !onEveryReset) return;
  const oldvalue = eventString(old ?? null);
  for (const vm of following(app, prop)) {
    if (event === 'property-set') {
      const newvalue = eventString(app.props.tryGet(global) ?? null);
      vm.events.fire(vm, `property-set:${prop}`, { name: prop, newvalue, oldvalue });
    } else {
      vm.events.fire(vm, `property-reset:${prop}`, { name: prop, oldvalue });
    }
  }
}

export const AP = declare({
  check_updates_vm: stage3(boolProp<App>('Check for updates inside qubes.', true)),
  clockvm: vmProp<App>('Domain that keeps the time for the others.', self, {
    stage: 3,
    allowNone: true,
    default: () => null,
    preSet: (_app, value, old) => {
      const oldVm = asVm(old);
      const newVm = asVm(value);
      if (oldVm && oldVm !== newVm && oldVm.features.has('service.clocksync'))
        oldVm.features.remove('service.clocksync');
      newVm?.features.set('service.clocksync', '1');
    },
  }),
  default_audiovm: vmProp<App>('Default audio domain for new qubes.', self, {
    stage: 3,
    allowNone: true,
    default: (app) => app.adminVm,
    afterChange: (app, old) => fanOut(app, 'default_audiovm', 'audiovm', 'property-set', old),
  }),
  default_dispvm: vmProp<App>('Default disposable template.', self, {
    stage: 3,
    allowNone: true,
    default: () => null,
    validate: (_app, v) => requireDispvmTemplate('system', 'default_dispvm', v),
    afterChange: (app, old) => fanOut(app, 'default_dispvm', 'default_dispvm', 'property-reset', old, true),
  }),
  default_guivm: vmProp<App>('Default GUI domain for new qubes.', self, {
    stage: 3,
    allowNone: true,
    default: (app) => app.adminVm,
    afterChange: (app, old) => fanOut(app, 'default_guivm', 'guivm', 'property-set', old),
  }),
  default_kernel: stage3(
    strProp<App>('Kernel used by qubes that do not choose one.', undefined, {
      validate: (app, v) => {
        const k = v === null ? '' : String(v);
        if (k.includes('/')) throw new QubesPropertyValueError("Kernel name cannot contain '/'");
        if (k !== '') app.checkKernel(k);
        return k;
      },
    }),
  ),
  default_netvm: vmProp<App>('Network domain of qubes that do not choose one.', self, {
    stage: 3,
    allowNone: true,
    default: () => null,
    validate: (app, v) => checkDefaultNetvm(app, v),
    preSet: (app, value, old) => {
      const args = { name: 'netvm', newvalue: eventString(value), oldvalue: eventString(old ?? null) };
      for (const vm of following(app, 'netvm')) vm.events.fire(vm, 'property-pre-set:netvm', args);
    },
    afterChange: (app, old) => fanOut(app, 'default_netvm', 'netvm', 'property-reset', old),
  }),
  default_pool: poolProp('Storage pool for new volumes.', defaultPool),
  default_pool_kernel: poolProp('Storage pool for kernel volumes.', (app): string | null =>
    app.props.get(AP.default_pool),
  ),
  default_pool_private: poolProp('Storage pool for private volumes.', (app): string | null =>
    app.props.get(AP.default_pool),
  ),
  default_pool_root: poolProp('Storage pool for root volumes.', (app): string | null =>
    app.props.get(AP.default_pool),
  ),
  default_pool_volatile: poolProp('Storage pool for volatile volumes.', (app): string | null =>
    app.props.get(AP.default_pool),
  ),
  default_qrexec_timeout: stage3(intProp<App>('Default seconds to wait for qrexec after start.', 60)),
  default_shutdown_timeout: stage3(intProp<App>('Default seconds to wait for a clean shutdown.', 60)),
  // No default (GetDefault answers an empty body), unlike default_netvm whose default is None.
  default_template: vmProp<App>('Template of new qubes that do not choose one.', self, {
    stage: 3,
    allowNone: true,
    vmClass: TEMPLATE_VM,
  }),
  management_dispvm: vmProp<App>('Disposable template for management tasks.', self, {
    stage: 3,
    allowNone: true,
    default: () => null,
    validate: (_app, v) => requireDispvmTemplate('system', 'management_dispvm', v),
  }),
  maxmem: stage3(computed<App, number>('int', 'Host memory in MiB.', (app) => app.host.memoryMiB)),
  no_cpus: stage3(computed<App, number>('int', 'Number of host CPUs.', (app) => app.host.cpus)),
  stats_interval: stage3(intProp<App>('Seconds between vm-stats events.', 3)),
  updatevm: vmProp<App>('Domain that downloads updates for dom0.', self, {
    stage: 3,
    allowNone: true,
    default: () => null,
  }),
});

/** The global properties, in declaration order (the store sorts them for List). */
export const APP_PROPERTIES: readonly Def[] = Object.values(AP);
