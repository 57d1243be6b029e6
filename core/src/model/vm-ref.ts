import type { App } from './app.js';
import { QubesPropertyValueError } from './errors.js';
import type { Decl, PropertyDef, PropertyHolder, PropValue } from './property.js';
import type { Vm } from './vm.js';

export interface VmRefOptions<H extends PropertyHolder> {
  readonly stage?: 2 | 3 | 4;
  readonly allowNone?: boolean;
  /** Upstream's vmclass: the classes the target must belong to, and the name used in the refusal. */
  readonly vmClass?: { readonly name: string; readonly accepts: (vm: Vm) => boolean };
  readonly default?: (holder: H) => Vm | null;
  readonly validate?: (holder: H, value: Vm | null) => void;
  readonly preSet?: PropertyDef<H>['preSet'];
  readonly preReset?: PropertyDef<H>['preReset'];
  readonly afterChange?: PropertyDef<H>['afterChange'];
}

/** Any non-RemoteVM domain, which is upstream's default vmclass (LocalVM). */
export const LOCAL_VM = { name: 'LocalVM', accepts: (vm: Vm) => vm.klass !== 'RemoteVM' };
export const TEMPLATE_VM = { name: 'TemplateVM', accepts: (vm: Vm) => vm.klass === 'TemplateVM' };

/** A property whose value is another domain (upstream's VMProperty); '' on the wire means None. */
export function vmProp<H extends PropertyHolder>(
  help: string,
  appOf: (holder: H) => App,
  options: VmRefOptions<H> = {},
): Decl<H, Vm | null> {
  const vmClass = options.vmClass ?? LOCAL_VM;
  return (name) => ({
    name,
    type: 'vm',
    stage: options.stage ?? 4,
    help,
    allowNone: options.allowNone ?? false,
    default: options.default,
    parse: (holder, raw) => {
      if (raw === '') return null;
      const vm = appOf(holder).domains.byName(raw);
      if (!vm) throw new QubesPropertyValueError(`Can't set ${name} to non-existing qube ${raw}`);
      return vm;
    },
    validate: (holder, value) => {
      const vm = asVm(value);
      if (vm === null) {
        if (!options.allowNone) {
          throw new QubesPropertyValueError(
            `Invalid value None for property '${name}' of ${holder.holderName}`,
          );
        }
        options.validate?.(holder, null);
        return null;
      }
      if (!vmClass.accepts(vm)) {
        throw new QubesPropertyValueError(
          `wrong VM class: domains['${vm.name}'] is of type ${vm.klass} and not ${vmClass.name}`,
        );
      }
      options.validate?.(holder, vm);
      return vm;
    },
    preSet: options.preSet,
    preReset: options.preReset,
    afterChange: options.afterChange,
  });
}

/** The template_for_dispvms check shared by default_dispvm and management_dispvm. */
export function requireDispvmTemplate(holderDesc: string, prop: string, vm: Vm | null): void {
  if (vm && !vm.bool('template_for_dispvms')) {
    throw new QubesPropertyValueError(
      `Cannot set invalid property to ${holderDesc}, ${prop} '${vm.name}' has template_for_dispvms set to False`,
    );
  }
}

/** The VM in a property value, if it holds one (labels and scalars do not). */
export function asVm(value: PropValue | undefined): Vm | null {
  return typeof value === 'object' && value !== null && 'features' in value ? value : null;
}
