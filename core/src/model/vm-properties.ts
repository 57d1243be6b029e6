import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  QubesPropertyValueError,
  QubesValueError,
  QubesVMInUseError,
  QubesVMNotHaltedError,
  QubesVMNotStartedError,
} from './errors.js';
import { normaliseDeniedList } from './denied-interfaces.js';
import { featureTrue } from './features.js';
import type { Label } from './labels.js';
import type { Decl, PropertyDef, PropValue, Stored } from './property.js';
import { declare, eventString, override } from './property.js';
import {
  boolProp,
  computed,
  intProp,
  nonNegative,
  parseIPv4,
  parseIPv6,
  positive,
  strProp,
} from './property-types.js';
import type { PyInt } from './validate.js';
import { parseUuid } from './validate.js';
import { AP } from './app-properties.js';
import type { Vm } from './vm.js';
import { TEMPLATE_VM, requireDispvmTemplate, vmProp } from './vm-ref.js';

/**
 * Every VM property, declared once, and each class's table of them (VM_PROPS).
 * Defaults, checks and messages follow upstream (admin-api-reference §3.3).
 */
type Def<T extends PropValue = PropValue> = PropertyDef<Vm, T>;
const appOf = (vm: Vm) => vm.app;

/**
 * Template-inherited default: the template's value, else the fallback. The
 * declaration comes through a function because P is still being built when the
 * defaults inside it are made.
 */
function fromTemplate<T extends PropValue>(
  prop: () => PropertyDef<Vm, T>,
  fallback: (vm: Vm) => Stored<T>,
): (vm: Vm) => Stored<T> {
  return (vm) => {
    const t = vm.template;
    const def = prop();
    return t && t.props.has(def.name) ? t.props.exact(def) : fallback(vm);
  };
}

function vmidToIpv4(prefix: string, vmid: number): string {
  if (vmid < 255) return `${prefix}.${(vmid >> 8) & 0xff}.${vmid & 0xff}`;
  const id = vmid - 1;
  return `${prefix}.${Math.floor(id / 254)}.${(id % 254) + 1}`;
}

function ipForVm(vm: Vm): string {
  return vm.klass === 'DispVM'
    ? vmidToIpv4('10.138', vm.props.get(VM_PROPS.DispVM.dispid))
    : vmidToIpv4('10.137', vm.qid);
}

function ip6ForVm(vm: Vm): string {
  return vm.klass === 'DispVM'
    ? `fd09:24ef:4179::a8a:${vm.props.get(VM_PROPS.DispVM.dispid).toString(16)}`
    : `fd09:24ef:4179::a89:${vm.qid.toString(16)}`;
}

const hasIpv6 = (vm: Vm) => featureTrue(vm.featureWithNetvm('ipv6'));

/** PCI passthrough changes several defaults (upstream checks for any PCI assignment). */
const hasPci = (vm: Vm) => vm.devices.list('pci').length > 0;

/**
 * Upstream's is_memory_balancing_possible: not with PCI devices, and an HVM
 * qube only when its tools announce qrexec and, if they announce services at
 * all, the meminfo-writer among them (the sign of a balloon driver).
 */
function memoryBalancingPossible(vm: Vm): boolean {
  if (hasPci(vm)) return false;
  if (vm.props.get('virt_mode') !== 'hvm') return true;
  const names = new Set<string>();
  for (let v: Vm | null = vm; v; v = v.template) for (const f of v.features.names()) names.add(f);
  const announcesServices = [...names].some((f) => f.startsWith('supported-service.'));
  if (!featureTrue(vm.featureWithTemplate('qrexec'))) return false;
  return !announcesServices || featureTrue(vm.featureWithTemplate('supported-service.meminfo-writer'));
}

/**
 * No balancing: 0. Else the template's value, or ten times `memory` for Linux
 * (the qube's own `os` feature; 4000 MiB otherwise) within half the host's memory.
 */
function maxmemDefault(vm: Vm): PyInt {
  if (!memoryBalancingPossible(vm)) return 0;
  const t = vm.template;
  if (t && t.props.has('maxmem')) return t.props.exact(P.maxmem);
  const memory = vm.props.get(P.memory);
  const wanted = vm.features.get('os') === 'Linux' ? memory * 10 : 4000;
  return Math.min(wanted, Math.floor(vm.app.host.memoryMiB / 2));
}

/**
 * Upstream's _default_bootmode: the qube's own `boot-mode.active` when some
 * kernelopts exist for it, else the first `appvm_default_bootmode` up the
 * template chain that has kernelopts; `default` ends the search at once.
 */
function defaultBootmode(vm: Vm): string {
  const active = vm.features.get('boot-mode.active');
  if (active !== undefined) {
    if (active === 'default') return 'default';
    if (vm.featureWithTemplate(`boot-mode.kernelopts.${active}`) !== undefined) return active;
  }
  for (let subject: Vm | null = vm; subject?.template; subject = subject.template) {
    const t: Vm = subject.template;
    if (!t.props.has('appvm_default_bootmode')) continue;
    const mode = t.props.get(VM_PROPS.TemplateVM.appvm_default_bootmode);
    if (mode === 'default') return 'default';
    if (subject.featureWithTemplate(`boot-mode.kernelopts.${mode}`) !== undefined) return mode;
  }
  return 'default';
}

const virtModeFromTemplate = fromTemplate(
  (): Def<string> => P.virt_mode,
  () => 'pvh',
);

/**
 * Upstream's order: nothing without a kernel; without PCI devices the template's value, else the
 * kernel's default-kernelopts-nopci.txt, else swiotlb=2048; with PCI devices the kernel's
 * default-kernelopts-pci.txt, else nothing, and dom0's feature suspend-s0ix adds the guest's
 * suspend option.
 */
function defaultKernelopts(vm: Vm): string {
  const kernel = vm.props.tryGet('kernel');
  if (typeof kernel !== 'string' || kernel === '') return '';
  const pci = hasPci(vm);
  const t = vm.template;
  if (!pci && t && t.props.has('kernelopts')) return t.props.get(P.kernelopts);
  const extra = pci && vm.app.adminVm.features.get('suspend-s0ix') ? ' qubes_exp_pm_use_suspend=1' : '';
  const file = join(
    vm.app.kernelsDir,
    kernel,
    pci ? 'default-kernelopts-pci.txt' : 'default-kernelopts-nopci.txt',
  );
  if (existsSync(file)) return readFileSync(file, 'utf8').trim() + extra;
  return (pci ? '' : 'swiotlb=2048') + extra;
}

/** Tells event subscribers that computed properties changed with another one (upstream fires property-reset). */
export function announce(vm: Vm, ...props: string[]): void {
  for (const p of props) vm.events.fire(vm, `property-reset:${p}`, { name: p });
}

function halted(vm: Vm, message: string): void {
  if (vm.powerState !== 'Halted') throw new QubesVMNotHaltedError(message);
}

/** The properties of every class, RemoteVM included: identity, label, class and icon. */
const BASE = {
  // Parsed (as upstream's uuid.UUID type does) before the write-once refusal.
  uuid: strProp<Vm>('UUID of the domain.', undefined, {
    writeOnce: true,
    parse: (_vm, raw) => parseUuid(raw),
  }),
  name: strProp<Vm>('User-visible name of the domain.', undefined, { writeOnce: true }),
  qid: intProp<Vm>('Internal, persistent identifier of the domain, 0..10000.', undefined, {
    writeOnce: true,
    validate: (_vm, v) => {
      if (typeof v !== 'number' || v < 0 || v > 10000) throw new QubesPropertyValueError('qid out of range');
      return v;
    },
  }),
  label: (name: string): Def<Label> => ({
    name,
    type: 'label',
    stage: 2,
    help: 'Colourful label assigned to the domain.',
    parse: (vm, raw) => vm.app.labels.get(raw),
    afterChange: (vm) => announce(vm, 'icon'),
  }),
  klass: computed<Vm, string | null>('str', 'Domain class name.', (vm) => vm.klass),
  icon: computed<Vm, string | null>('str', 'Freedesktop icon name of the domain.', (vm) => {
    // dom0's icon does not depend on its label, which a Reset can leave unset.
    if (vm.klass === 'AdminVM') return 'adminvm-black';
    // A label that was reset leaves no icon (upstream's has none to give either).
    const label = vm.label?.name;
    if (label === undefined) return null;
    if (vm.klass === 'TemplateVM') return `templatevm-${label}`;
    // A disposable template (an AppVM only: upstream's StandaloneVM keeps its own icon) looks like a template.
    if (vm.klass === 'AppVM' && vm.bool('template_for_dispvms')) return `templatevm-${label}`;
    if (featureTrue(vm.features.get('servicevm'))) return `servicevm-${label}`;
    if (vm.klass === 'DispVM') return `dispvm-${label}`;
    if (vm.klass === 'StandaloneVM') return `standalonevm-${label}`;
    if (vm.klass === 'RemoteVM') return `remotevm-${label}`;
    return `appvm-${label}`;
  }),
};

/** The properties of every local qube class (upstream's QubesVM): TemplateVM, AppVM, StandaloneVM, DispVM. */
const QUBES_VM = {
  ...BASE,
  autostart: boolProp<Vm>('Start the domain when the daemon starts.', false),
  backup_timestamp: intProp<Vm, null>('Time of the last backup (Unix time), or empty.', null),
  debug: boolProp<Vm>('Run the domain in debug mode (verbose boot, console kept).', false),
  default_user: strProp<Vm>(
    'User that services in the domain run as by default.',
    fromTemplate(
      (): Def<string> => P.default_user,
      () => 'user',
    ),
    {
      validate: (_vm, v) => {
        const allowed = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.';
        const s = String(v);
        if (![...s].every((c) => allowed.includes(c))) {
          throw new QubesPropertyValueError(`Username can contain only those characters: ${allowed}`);
        }
        return s;
      },
    },
  ),
  devices_denied: strProp<Vm>('Device interface codes (7 characters each) that may not be attached.', '', {
    validate: (_vm, v) => normaliseDeniedList(v === null ? '' : String(v)),
  }),
  dns: computed<Vm, string | null>('str', 'DNS servers the domain uses.', (vm) =>
    vm.isNetworked ? '10.139.1.1 10.139.1.2' : null,
  ),
  gateway: computed<Vm, string | null>(
    'str',
    'Gateway for domains that use this one as netvm.',
    (vm): string | null => (vm.bool('provides_network') ? vm.props.get(P.visible_ip) : null),
  ),
  gateway6: computed<Vm, string | null>(
    'str',
    'IPv6 gateway for domains that use this one as netvm.',
    (vm): string | null => (hasIpv6(vm) && vm.bool('provides_network') ? vm.props.get(P.visible_ip6) : null),
  ),
  include_in_backups: boolProp<Vm>('Include the domain in backups by default.', (vm) => {
    if (vm.klass === 'DispVM') return !vm.bool('auto_cleanup');
    if (vm.klass === 'RemoteVM') return false;
    return true;
  }),
  installed_by_rpm: boolProp<Vm>('Installed by a package: the API refuses to remove it.', false),
  ip: strProp<Vm, null>(
    'IPv4 address of the domain.',
    (vm) => {
      if (!vm.isNetworked) return null;
      return ipForVm(vm);
    },
    {
      parse: (_vm, raw) => parseIPv4(raw),
      afterChange: (vm) => {
        announce(vm, 'visible_ip');
        if (vm.bool('provides_network')) {
          announce(vm, 'gateway');
          for (const d of vm.app.domains.list()) if (d.netvm === vm) announce(d, 'visible_gateway');
        }
      },
    },
  ),
  ip6: strProp<Vm, null>(
    'IPv6 address of the domain.',
    (vm) => {
      if (!vm.isNetworked || !hasIpv6(vm)) return null;
      return ip6ForVm(vm);
    },
    { parse: (_vm, raw) => parseIPv6(raw) },
  ),
  kernel: strProp<Vm>(
    'Kernel used by the domain (a directory of the kernels pool); empty for none.',
    fromTemplate(
      (): Def<string> => P.kernel,
      (vm) => vm.app.props.get(AP.default_kernel),
    ),
    {
      validate: (vm, v) => {
        const k = v === null ? '' : String(v);
        if (k.includes('/')) throw new QubesPropertyValueError("Kernel name cannot contain '/'");
        if (k !== '') vm.app.checkKernel(k);
        return k;
      },
    },
  ),
  keyboard_layout: strProp<Vm>(
    'Keyboard layout as layout+variant+options.',
    (vm): string => {
      const gui = vm.props.has('guivm') ? vm.props.tryGet(P.guivm) : null;
      if (gui && gui !== vm && gui.props.has('keyboard_layout')) return gui.props.get(P.keyboard_layout);
      return 'us++';
    },
    {
      validate: (_vm, v) => {
        const s = String(v);
        if (!/^[\x00-\x7f]*$/.test(s)) throw new QubesPropertyValueError('Keyboard layouts must be ASCII');
        const parts = s.split('+');
        if (parts.length !== 3)
          throw new QubesPropertyValueError('invalid number of keyboard layout parameters');
        const [layout = '', variant = '', options = ''] = parts;
        if (!/^[A-Za-z]+$/.test(layout))
          throw new QubesPropertyValueError('Invalid keyboard layout provided');
        if (!/^[A-Za-z0-9_-]*$/.test(variant))
          throw new QubesPropertyValueError('Invalid layout variant provided');
        if (!/^[A-Za-z0-9_:,-]*$/.test(options))
          throw new QubesPropertyValueError('Invalid layout options provided');
        return s;
      },
      afterChange: announceKeyboardLayout,
    },
  ),
  mac: strProp<Vm>("MAC address of the domain's network interface.", '00:16:3e:5e:6c:00', {
    validate: (_vm, v) => {
      const s = String(v).toLowerCase();
      if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(s))
        throw new QubesPropertyValueError('Invalid MAC address value');
      return s;
    },
  }),
  maxmem: intProp<Vm>(
    'Maximum memory (MiB) the domain may balloon up to; 0 disables balancing.',
    maxmemDefault,
    {
      validate: nonNegative('maxmem'),
      // A running qube may be given the value it has. Upstream's refusal passes its message
      // where the qube goes and fails building it, answering nothing: its words, typed here.
      preSet: (vm, v, old) => {
        if (v !== old)
          halted(
            vm,
            `Can't change maxmem of VM ${vm.name}, because it isn't Halted and memory hotplug is forbidden`,
          );
      },
    },
  ),
  memory: intProp<Vm>(
    'Memory (MiB) given to the domain at start.',
    fromTemplate(
      (): Def<number> => P.memory,
      () => 400,
    ),
    {
      validate: positive('memory'),
    },
  ),
  provides_network: boolProp<Vm>('Whether other domains may use this one as netvm.', false, {
    preSet: (vm, v) => {
      if (v === false && vm.app.domains.list().some((d) => d !== vm && d.netvm === vm)) {
        throw new QubesValueError("The qube is still used by other qubes, change theirs 'netvm' first");
      }
    },
    afterChange: (vm) => announce(vm, 'gateway', 'gateway6'),
  }),
  qrexec_timeout: intProp<Vm>(
    'Seconds to wait for the qrexec agent after start.',
    fromTemplate(
      (): Def<number> => P.qrexec_timeout,
      (vm) => vm.app.props.exact(AP.default_qrexec_timeout),
    ),
    {
      validate: positive('qrexec_timeout'),
    },
  ),
  shutdown_timeout: intProp<Vm>(
    'Seconds to wait for a clean shutdown.',
    fromTemplate(
      (): Def<number> => P.shutdown_timeout,
      (vm) => vm.app.props.exact(AP.default_shutdown_timeout),
    ),
    {
      validate: positive('shutdown_timeout'),
    },
  ),
  start_time: computed<Vm, string | null>(
    'str',
    'Time the domain was started (Unix time), empty when halted.',
    (vm) => (vm.startTime === null ? null : String(vm.startTime)),
  ),
  stubdom_mem: intProp<Vm, null>('Memory (MiB) of the device-model stub domain.', null, {
    validate: positive('stubdom_mem'),
  }),
  stubdom_uuid: computed<Vm, string | null>('str', 'UUID of the stub domain, if any.', () => ''),
  stubdom_xid: computed<Vm, number>('int', 'Domain id of the stub domain, -1 if none.', () => -1),
  updateable: computed<Vm, boolean>(
    'bool',
    'Whether changes to the root volume persist.',
    (vm) => vm.klass === 'TemplateVM' || vm.klass === 'StandaloneVM' || vm.klass === 'AdminVM',
  ),
  vcpus: intProp<Vm>(
    'Number of virtual CPUs.',
    fromTemplate(
      (): Def<number> => P.vcpus,
      () => 2,
    ),
    { validate: positive('vcpus') },
  ),
  virt_mode: strProp<Vm>(
    'Virtualisation mode: hvm, pv or pvh.',
    (vm) => (hasPci(vm) ? 'hvm' : virtModeFromTemplate(vm)),
    {
      validate: (vm, v) => {
        const s = String(v).toLowerCase();
        if (s !== 'hvm' && s !== 'pv' && s !== 'pvh') {
          throw new QubesPropertyValueError('Invalid virtualization mode, supported values: hvm, pv, pvh');
        }
        if (s === 'pvh' && hasPci(vm)) {
          throw new QubesPropertyValueError("pvh mode can't be set if pci devices are assigned");
        }
        return s;
      },
    },
  ),
  visible_gateway: computed<Vm, string | null>(
    'str',
    'Default gateway as the domain sees it.',
    (vm): string | null => {
      const fake = vm.featureWithTemplate('net.fake-gateway');
      if (fake) return fake;
      const n = vm.netvm;
      return n ? n.props.get(P.gateway) : null;
    },
  ),
  visible_gateway6: computed<Vm, string | null>(
    'str',
    'Default IPv6 gateway as the domain sees it.',
    (vm): string | null => {
      const n = vm.netvm;
      return hasIpv6(vm) && n ? n.props.get(P.gateway6) : null;
    },
  ),
  visible_ip: computed<Vm, string | null>(
    'str',
    'IPv4 address as the domain sees it.',
    (vm): string | null => vm.featureWithTemplate('net.fake-ip') || vm.props.get(P.ip),
  ),
  visible_ip6: computed<Vm, string | null>(
    'str',
    'IPv6 address as the domain sees it.',
    (vm): string | null => vm.props.get(P.ip6),
  ),
  visible_netmask: computed<Vm, string | null>('str', 'Netmask as the domain sees it.', (vm) => {
    const fake = vm.featureWithTemplate('net.fake-netmask');
    if (fake) return fake;
    const n = vm.netvm;
    return n && n.isNetworked ? '255.255.255.255' : null;
  }),
  xid: computed<Vm, number>('int', 'Hypervisor domain id, -1 when not running.', (vm) => vm.xid),

  audiovm: vmProp<Vm>('Domain that provides audio to this one; empty for none.', appOf, {
    allowNone: true,
    default: (vm) => vm.app.props.get(AP.default_audiovm),
  }),
  guivm: vmProp<Vm>('Domain that provides the GUI to this one; empty for none.', appOf, {
    allowNone: true,
    default: (vm) => vm.app.props.get(AP.default_guivm),
  }),
  default_dispvm: vmProp<Vm>(
    'Disposable template for disposables this domain starts; empty for none.',
    appOf,
    {
      allowNone: true,
      default: (vm) => (vm.klass === 'DispVM' ? vm.template : vm.app.props.get(AP.default_dispvm)),
      validate: (vm, v) => requireDispvmTemplate(`qube '${vm.name}'`, 'default_dispvm', v),
    },
  ),
  management_dispvm: vmProp<Vm>('Disposable template for management tasks on this domain.', appOf, {
    allowNone: true,
    default: fromTemplate(
      (): Def<Vm | null> => P.management_dispvm,
      (vm) => vm.app.props.get(AP.management_dispvm),
    ),
    validate: (vm, v) => requireDispvmTemplate(`qube '${vm.name}'`, 'management_dispvm', v),
  }),
  netvm: vmProp<Vm>(
    'Domain that provides network to this one. Empty: disconnected. Unset: the default netvm.',
    appOf,
    {
      allowNone: true,
      default: (vm) => (vm.klass === 'TemplateVM' ? null : vm.app.props.get(AP.default_netvm)),
      validate: (vm, target) => checkNetvm(vm, target),
      preReset: (vm) => checkNetvmReset(vm),
    },
  ),
  kernelopts: strProp<Vm>('Kernel command line additions.', defaultKernelopts, {
    stage: 4,
    validate: (_vm, v) => {
      const s = v === null ? '' : String(v);
      if (s.length > 512) throw new QubesPropertyValueError('Kernelopts value too long (512 chars max)');
      return s;
    },
  }),
  bootmode: strProp<Vm>('Boot mode (selects extra kernel options).', defaultBootmode, {
    stage: 4,
  }),
};

/**
 * The properties of the four local qube classes, with their value types: what the rest
 * of the daemon reads them through (a store looks a property up by its name, so these
 * read AdminVM's and RemoteVM's own declarations of the properties those classes share).
 */
export const P = declare(QUBES_VM);

const templateForDispvms = boolProp<Vm>('Whether disposables may be based on this domain.', false, {
  preSet: (vm, v) => {
    if (v === false) checkNotDispvmTemplateInUse(vm);
  },
  preReset: (vm) => checkNotDispvmTemplateInUse(vm),
  afterChange: (vm) => announce(vm, 'icon'),
});

/** AppVM's and DispVM's template: changed only while halted, never reset. */
const templateChanges = {
  preSet: (vm: Vm) => halted(vm, 'Cannot change template while qube is running'),
  preReset: (vm: Vm) => refuseTemplateReset(vm),
};

/** The same declaration, read-only with a fixed value: dom0's identity and memory. */
const fixed = <T extends PropValue>(decl: Decl<Vm, T>, value: T): Decl<Vm, T> =>
  override(decl, { default: () => value, readOnly: true });

/**
 * Each class's properties, each listed once under its name; the store reports them in
 * (stage, name) order. Upstream's AdminVM is a BaseVM of its own, not a QubesVM.
 */
export const VM_PROPS = {
  AdminVM: declare({
    // Declared without a type, unlike a qube's: a Set is refused before any value is parsed.
    uuid: override(fixed(BASE.uuid, '00000000-0000-0000-0000-000000000000'), { parse: undefined }),
    name: fixed(BASE.name, 'dom0'),
    qid: fixed(BASE.qid, 0),
    label: BASE.label,
    klass: BASE.klass,
    icon: BASE.icon,
    devices_denied: QUBES_VM.devices_denied,
    include_in_backups: QUBES_VM.include_in_backups,
    keyboard_layout: override(QUBES_VM.keyboard_layout, { default: () => 'us++' }),
    // Read-only: a qube's range check and running-state refusal have nothing to guard here.
    maxmem: override(fixed(QUBES_VM.maxmem, 4096), { validate: undefined, preSet: undefined }),
    updateable: QUBES_VM.updateable,
    default_dispvm: override(QUBES_VM.default_dispvm, {
      default: (vm) => vm.app.props.get(AP.default_dispvm),
    }),
  }),
  TemplateVM: declare({
    ...QUBES_VM,
    appvm_default_bootmode: strProp<Vm>(
      'Boot mode qubes based on this template use by default.',
      (vm) => vm.features.get('boot-mode.appvm-default') ?? 'default',
      { stage: 4 },
    ),
  }),
  AppVM: declare({
    ...QUBES_VM,
    template_for_dispvms: templateForDispvms,
    template: vmProp<Vm>('Template this domain is based on.', appOf, {
      vmClass: TEMPLATE_VM,
      ...templateChanges,
    }),
  }),
  StandaloneVM: declare({ ...QUBES_VM, template_for_dispvms: templateForDispvms }),
  DispVM: declare({
    ...QUBES_VM,
    auto_cleanup: boolProp<Vm>('Remove the disposable when it shuts down.', false),
    dispid: intProp<Vm>('Number of the disposable, used in its name and address.', undefined, {
      writeOnce: true,
    }),
    // Upstream: named in its template's preload-dispvm, or requested and not yet used (in progress again).
    is_preload: computed<Vm, boolean>(
      'bool',
      'Whether this disposable is preloaded.',
      (vm) =>
        featureTrue(vm.features.get('preload-dispvm-in-progress')) ||
        (vm.template?.features.get('preload-dispvm') ?? '').split(' ').includes(vm.name),
    ),
    template: vmProp<Vm>('Disposable template this disposable is based on.', appOf, {
      validate: (_vm, t) => {
        if (t && !t.bool('template_for_dispvms')) {
          throw new QubesPropertyValueError('template for disposable must have template_for_dispvms=True');
        }
      },
      ...templateChanges,
    }),
  }),
  RemoteVM: declare({
    ...BASE,
    include_in_backups: QUBES_VM.include_in_backups,
    remote_name: strProp<Vm, null>('Name of the domain on the remote host.', null),
    transport_rpc: strProp<Vm, null>('qrexec service that carries calls to the remote host.', null),
    relayvm: vmProp<Vm>('Domain that relays qrexec calls to the remote host.', appOf, {
      allowNone: true,
      default: () => null,
    }),
  }),
};

/**
 * gui.py: a Set that changes a qube's layout is announced, as a reset, on each qube using it as
 * GUI domain whose own layout follows it (a Reset is not, nor a Set to the same layout).
 */
function announceKeyboardLayout(vm: Vm, old: PropValue | undefined): void {
  if (vm.props.isDefault('keyboard_layout') || vm.props.tryGet('keyboard_layout') === old) return;
  for (const user of vm.app.domains.sorted()) {
    if (!user.props.has('guivm') || user.props.tryGet('guivm') !== vm) continue;
    if (!user.props.isDefault('keyboard_layout')) continue;
    const args = { name: 'keyboard_layout', ...(old === undefined ? {} : { oldvalue: eventString(old) }) };
    user.events.fire(user, 'property-reset:keyboard_layout', args);
  }
}

/** Upstream's netvm setter: the target provides network and is not downstream of the qube. */
function checkNetvmTarget(vm: Vm, target: Vm | null): void {
  if (target === null) return;
  if (!target.bool('provides_network'))
    throw new QubesValueError(`The ${target.name} qube does not provide network`);
  for (let n: Vm | null = target; n; n = n.netvm) {
    if (n === vm) throw new QubesValueError('Loops in network are unsupported');
  }
}

/** A Reset checks the default it falls back to as a Set would (upstream's pre-reset handler). */
function checkNetvmReset(vm: Vm): void {
  const target = vm.props.getDefault(P.netvm);
  checkNetvmTarget(vm, target);
  if (target !== vm.props.tryGet('netvm')) checkNetvm(vm, target);
}

function checkNetvm(vm: Vm, target: Vm | null): void {
  if (target === null) return;
  checkNetvmTarget(vm, target);
  if (vm.powerState !== 'Halted' && target.powerState === 'Halted') {
    throw new QubesVMNotStartedError(`Cannot dynamically attach to stopped qube ${target.name}`);
  }
}

/**
 * Upstream's guard on turning template_for_dispvms off: refused while the system's default_dispvm or
 * management_dispvm is the qube, or another qube has it explicitly as its default_dispvm,
 * management_dispvm or template (a preload aside: it goes with the change), in upstream's words.
 */
function checkNotDispvmTemplateInUse(vm: Vm): void {
  if (vm.props.tryGet('template_for_dispvms') !== true) return;
  const systemProps = ['default_dispvm', 'management_dispvm'];
  const qubeProps = ['default_dispvm', 'management_dispvm', 'template'];
  const app = vm.app;
  if (systemProps.some((p) => app.props.tryGet(p) === vm)) {
    throw new QubesVMInUseError(
      `Cannot change template_for_dispvms to False while it is in use by the system by any of these properties: ${systemProps.join(', ')}`,
    );
  }
  const usedBy = (d: Vm, p: string): boolean =>
    d.props.has(p) &&
    !d.props.isDefault(p) &&
    d.props.get(p) === vm &&
    !(d.bool('is_preload') && (p === 'template' || d.template === vm));
  if (app.domains.list().some((d) => d !== vm && qubeProps.some((p) => usedBy(d, p)))) {
    throw new QubesVMInUseError(
      `Cannot change template_for_dispvms to False while it is the disposable template of a qube by any of these properties: ${qubeProps.join(', ')}`,
    );
  }
}

function refuseTemplateReset(vm: Vm): never {
  const dflt = vm.app.props.tryGet(AP.default_template);
  if (dflt) {
    throw new QubesValueError(
      `Cannot unset template. You can set it to the current default (${dflt.name}) instead`,
    );
  }
  throw new QubesValueError('Cannot unset template');
}
