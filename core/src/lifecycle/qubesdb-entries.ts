import { createHash } from 'node:crypto';
import type { Vm } from '../model/vm.js';

/** Longest service name upstream exports to /qubes-service/ (longer ones are refused or skipped). */
const MAX_SERVICE_NAME = 48;

/** Features upstream's R3 compatibility layer also exports as services (r3compatibility.py). */
const R3_SERVICES: Readonly<Record<string, string>> = {
  'service.ntpd': 'ntpd',
  'check-updates': 'qubes-update-check',
  dvm: 'qubes-dvm',
};

/** Python's str(bool(value)) of a feature value (features are strings; only '' is false). */
const pyBool = (value: string | undefined | boolean): 'True' | 'False' =>
  value === undefined || value === false || value === '' ? 'False' : 'True';
/** str(int(bool(value))) */
const pyFlag = (value: string | undefined | boolean): '1' | '0' => (pyBool(value) === 'True' ? '1' : '0');

export interface QubesDbEntryContext {
  /** dom0's time zone name (upstream reads /etc/localtime), or null when it has none. */
  readonly timezone: string | null;
}

/**
 * The entries dom0 gives a running domain, as qubes-core-admin's
 * create_qdb_entries and its extensions' domain-qdb-create handlers write
 * them (services, vm-config, gui, R3 compatibility). Everything is a pure
 * function of the model, so a change anywhere is found by computing again.
 * /qubes-random-seed is not here: it is written once per start.
 */
export function qubesDbEntries(vm: Vm, context: QubesDbEntryContext): Map<string, string> {
  const entries = new Map<string, string>();
  const put = (key: string, value: string): void => void entries.set(key, value);
  const prop = (name: string): unknown => (vm.props.has(name) ? vm.props.tryGet(name) : undefined);
  const str = (name: string): string => {
    const value = prop(name);
    return value === null || value === undefined ? '' : String(value);
  };

  const updateable = prop('updateable') === true;
  put('/name', vm.name);
  put('/type', vm.klass);
  put('/default-user', defaultUser(vm));
  put('/qubes-vm-updateable', pyBool(updateable));
  put('/qubes-vm-persistence', updateable ? 'full' : 'rw-only');
  put('/qubes-debug-mode', pyFlag(prop('debug') === true));
  put('/qubes-base-template', vm.template?.name ?? '');

  const providesNetwork = vm.bool('provides_network');
  const dns = str('dns').split(' ').filter(Boolean);
  const dnsNames = ['primary', 'secondary'];
  if (providesNetwork) {
    put('/qubes-netvm-network', str('gateway'));
    put('/qubes-netvm-gateway', str('gateway'));
    if (str('gateway6')) put('/qubes-netvm-gateway6', str('gateway6'));
    put('/qubes-netvm-netmask', '255.255.255.255');
    dns.slice(0, 2).forEach((addr, i) => put(`/qubes-netvm-${dnsNames[i]}-dns`, addr));
  }
  if (vm.netvm) {
    put('/qubes-mac', str('mac'));
    put('/qubes-ip', str('visible_ip'));
    put('/qubes-netmask', str('visible_netmask'));
    put('/qubes-gateway', str('visible_gateway'));
    dns.slice(0, 2).forEach((addr, i) => put(`/qubes-${dnsNames[i]}-dns`, addr));
    if (str('visible_ip6')) put('/qubes-ip6', str('visible_ip6'));
    if (str('visible_gateway6')) put('/qubes-gateway6', str('visible_gateway6'));
  }

  if (context.timezone && pyBool(vm.featureWithTemplate('anon-timezone')) === 'False') {
    put('/qubes-timezone', context.timezone);
  }
  put('/qubes-block-devices', '');
  put('/qubes-usb-devices', '');

  // services.py
  for (const [feature, value] of vm.features.entries()) {
    if (!feature.startsWith('service.')) continue;
    const service = feature.slice('service.'.length);
    if (service.startsWith('app-dispvm.') && pyBool(value) === 'True') {
      const app = service.slice('app-dispvm.'.length);
      put(`/hash-app-dispvm/${createHash('sha256').update(app).digest('base64url')}`, app);
    }
    if (service !== '' && service.length <= MAX_SERVICE_NAME) put(`/qubes-service/${service}`, pyFlag(value));
  }
  put('/qubes-service/meminfo-writer', Number(prop('maxmem') ?? 0) > 0 ? '1' : '0');

  // vm_config.py
  for (const [feature, value] of vm.features.entries()) {
    if (feature.startsWith('vm-config.')) put(`/vm-config/${feature.slice('vm-config.'.length)}`, value);
  }

  // gui.py
  for (const feature of ['gui-videoram-overhead', 'gui-videoram-min']) {
    const value = vm.featureWithTemplateAndAdminVm(feature);
    if (value !== undefined) put(`/qubes-${feature}`, value);
  }
  const guivm = prop('guivm') as Vm | null | undefined;
  put('/qubes-gui-enabled', pyBool(Boolean(guivm) && pyBool(vm.features.get('gui') ?? true) === 'True'));
  if (guivm && guivm !== vm) {
    put('/keyboard-layout', str('keyboard_layout'));
    if (guivm.xid >= 0) put('/qubes-gui-domain-xid', String(guivm.xid));
  }
  if (pyBool(vm.features.get('service.guivm')) === 'True') {
    put('/guivm-windows-prefix', vm.features.get('guivm-windows-prefix') ?? 'GuiVM');
  }

  // r3compatibility.py
  put('/qubes-vm-type', vmType(vm, providesNetwork));
  put('/qubes-iptables-error', '');
  for (const [feature, service] of Object.entries(R3_SERVICES)) {
    const value = vm.features.get(feature);
    if (value !== undefined) put(`/qubes-service/${service}`, pyFlag(value));
  }
  const proxy = vm.features.get('updates-proxy-setup');
  if (proxy !== undefined) put('/qubes-service/yum-proxy-setup', pyFlag(proxy));
  return entries;
}

/** get_default_user: a boot mode may name its own default user. */
function defaultUser(vm: Vm): string {
  const user = String(vm.props.tryGet('default_user') ?? 'user');
  const bootmode = vm.props.has('bootmode') ? String(vm.props.tryGet('bootmode') ?? 'default') : 'default';
  if (bootmode === 'default') return user;
  return vm.featureWithTemplate(`boot-mode.default-user.${bootmode}`) ?? user;
}

function vmType(vm: Vm, providesNetwork: boolean): string {
  if (vm.klass === 'TemplateVM') return 'TemplateVM';
  if (providesNetwork) return vm.netvm ? 'ProxyVM' : 'NetVM';
  return 'AppVM';
}
