import type { PropertyDef } from './property.js';
import { sortDefs } from './property.js';
import type { Vm } from './vm.js';
import { VM_PROPS } from './vm-properties.js';

export type VmClassName = 'AdminVM' | 'AppVM' | 'TemplateVM' | 'StandaloneVM' | 'DispVM' | 'RemoteVM';

/** The order admin.vmclass.List reports (upstream's entry-point order). */
export const VM_CLASS_NAMES: readonly VmClassName[] = [
  'AppVM',
  'TemplateVM',
  'StandaloneVM',
  'AdminVM',
  'DispVM',
  'RemoteVM',
];

export interface VmClassInfo {
  /** In List order: (load stage, name). */
  readonly props: readonly PropertyDef<Vm>[];
  /** The class's `template` property, for the classes based on a template (AppVM, DispVM). */
  readonly template?: PropertyDef<Vm, Vm | null>;
  /** Classes the API can create (AdminVM exists once, created by the daemon). */
  readonly creatable: boolean;
}

export const VM_CLASSES: Record<VmClassName, VmClassInfo> = {
  AdminVM: { props: sortDefs(Object.values(VM_PROPS.AdminVM)), creatable: false },
  TemplateVM: { props: sortDefs(Object.values(VM_PROPS.TemplateVM)), creatable: true },
  AppVM: {
    props: sortDefs(Object.values(VM_PROPS.AppVM)),
    template: VM_PROPS.AppVM.template,
    creatable: true,
  },
  StandaloneVM: { props: sortDefs(Object.values(VM_PROPS.StandaloneVM)), creatable: true },
  DispVM: {
    props: sortDefs(Object.values(VM_PROPS.DispVM)),
    template: VM_PROPS.DispVM.template,
    creatable: true,
  },
  RemoteVM: { props: sortDefs(Object.values(VM_PROPS.RemoteVM)), creatable: true },
};

export function isVmClassName(name: string): name is VmClassName {
  return Object.hasOwn(VM_CLASSES, name);
}
