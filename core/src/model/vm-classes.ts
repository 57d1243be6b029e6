import type { PropertyDef } from './property.js';
import { sortDefs } from './property.js';
import type { Vm } from './vm.js';
import { AP } from './app-properties.js';
import { P } from './vm-properties.js';

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
  readonly hasTemplate: boolean;
  /** Classes the API can create (AdminVM exists once, created by the daemon). */
  readonly creatable: boolean;
}

const BASE = [P.uuid, P.name, P.qid, P.label, P.klass, P.icon];

/** Properties of every QubesVM class (TemplateVM, AppVM, StandaloneVM, DispVM). */
const QUBES_VM = [
  ...BASE,
  P.autostart,
  P.backup_timestamp,
  P.debug,
  P.default_user,
  P.devices_denied,
  P.dns,
  P.gateway,
  P.gateway6,
  P.include_in_backups,
  P.installed_by_rpm,
  P.ip,
  P.ip6,
  P.kernel,
  P.keyboard_layout,
  P.mac,
  P.maxmem,
  P.memory,
  P.provides_network,
  P.qrexec_timeout,
  P.shutdown_timeout,
  P.start_time,
  P.stubdom_mem,
  P.stubdom_uuid,
  P.stubdom_xid,
  P.updateable,
  P.vcpus,
  P.virt_mode,
  P.visible_gateway,
  P.visible_gateway6,
  P.visible_ip,
  P.visible_ip6,
  P.visible_netmask,
  P.xid,
  P.audiovm,
  P.bootmode,
  P.default_dispvm,
  P.guivm,
  P.kernelopts,
  P.management_dispvm,
  P.netvm,
];

const ADMIN_VM_MAXMEM: PropertyDef<Vm> = {
  ...P.maxmem,
  default: () => 4096,
  readOnly: true,
  validate: undefined,
  preSet: undefined,
};
const ADMIN_VM_UUID: PropertyDef<Vm> = {
  ...P.uuid,
  default: () => '00000000-0000-0000-0000-000000000000',
  readOnly: true,
};
const ADMIN_VM_NAME: PropertyDef<Vm> = { ...P.name, default: () => 'dom0', readOnly: true };
const ADMIN_VM_QID: PropertyDef<Vm> = { ...P.qid, default: () => 0, readOnly: true };
const ADMIN_VM_KEYBOARD: PropertyDef<Vm> = { ...P.keyboard_layout, default: () => 'us++' };
const ADMIN_VM_DISPVM: PropertyDef<Vm> = {
  ...P.default_dispvm,
  default: (vm) => vm.app.props.get(AP.default_dispvm),
};

export const VM_CLASSES: Record<VmClassName, VmClassInfo> = {
  AdminVM: {
    props: sortDefs([
      ADMIN_VM_UUID,
      ADMIN_VM_NAME,
      ADMIN_VM_QID,
      P.label,
      P.klass,
      P.icon,
      P.devices_denied,
      P.include_in_backups,
      ADMIN_VM_KEYBOARD,
      ADMIN_VM_MAXMEM,
      P.updateable,
      ADMIN_VM_DISPVM,
    ]),
    hasTemplate: false,
    creatable: false,
  },
  TemplateVM: {
    props: sortDefs([...QUBES_VM, P.appvm_default_bootmode]),
    hasTemplate: false,
    creatable: true,
  },
  AppVM: {
    props: sortDefs([...QUBES_VM, P.template_for_dispvms, P.appTemplate]),
    hasTemplate: true,
    creatable: true,
  },
  StandaloneVM: {
    props: sortDefs([...QUBES_VM, P.template_for_dispvms]),
    hasTemplate: false,
    creatable: true,
  },
  DispVM: {
    props: sortDefs([...QUBES_VM, P.auto_cleanup, P.dispid, P.is_preload, P.dispTemplate]),
    hasTemplate: true,
    creatable: true,
  },
  RemoteVM: {
    props: sortDefs([...BASE, P.include_in_backups, P.remote_name, P.transport_rpc, P.relayvm]),
    hasTemplate: false,
    creatable: true,
  },
};

export function isVmClassName(name: string): name is VmClassName {
  return Object.hasOwn(VM_CLASSES, name);
}
