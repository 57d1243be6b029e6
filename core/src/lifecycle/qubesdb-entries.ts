import { createHash } from 'node:crypto';
import { customPersistEntry } from '../model/custom-persist.js';
import { MAX_SERVICE_NAME } from '../model/service-features.js';
import { isExpired, type FirewallRule } from '../model/firewall.js';
import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';
import { connectedVms } from './network-links.js';
import { P, VM_PROPS } from '../model/vm-properties.js';

const P_REMOTE = VM_PROPS.RemoteVM;

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
  /** Unix time (s) that decides which firewall rules have expired; default now. */
  readonly now?: number;
  /** Filled, for a netvm, with each running client's part of the entries (netvmClientPart). */
  readonly parts?: Map<Vm, Map<string, string>>;
}

/**
 * The entries dom0 gives a running domain, as qubes-core-admin's
 * create_qdb_entries and its extensions' domain-qdb-create handlers write
 * them (services, vm-config, gui, audio, relay, R3 compatibility). Everything is a pure
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
    for (const [key, value] of netvmClientEntries(vm, context.now ?? Date.now() / 1000, context.parts))
      put(key, value);
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

  // custom_persist.py
  for (const [feature, value] of vm.features.entries()) {
    const entry = customPersistEntry(feature, value);
    if (entry) put(...entry);
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
    const xid = runningXid(guivm);
    if (xid !== undefined) put('/qubes-gui-domain-xid', xid);
  }
  if (pyBool(vm.features.get('service.guivm')) === 'True') {
    put('/guivm-windows-prefix', vm.features.get('guivm-windows-prefix') ?? 'GuiVM');
  }

  // audio.py
  const audiovm = prop('audiovm') as Vm | null | undefined;
  const audioXid = audiovm && audiovm !== vm ? runningXid(audiovm) : undefined;
  if (audioXid !== undefined) put('/qubes-audio-domain-xid', audioXid);

  // relay.py: the name each RemoteVM this qube relays for has on the remote host
  for (const remote of relayedRemotes(vm))
    put(`/remote/${remote.name}`, remote.props.tryGet(P_REMOTE.remote_name) || remote.name);

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

/**
 * The qubes whose state qubesDbEntries(vm) reads: the qube and dom0, and every qube they lead to by
 * template, netvm, guivm and audiovm (the defaults read there: a template's default_user and
 * features, a netvm's gateway and ipv6 feature, a guivm's keyboard layout and xid, an audiovm's
 * xid); a netvm also reads every client (their addresses; the running ones' rules), and so what they
 * lead to, and a relay the RemoteVMs it relays for. After an event about a qube outside `all` the
 * entries are what they were, unless the event makes a qube read the subject (newReadersOf).
 */
export interface QubesDbSources {
  readonly all: ReadonlySet<Vm>;
  /** What everything but a netvm's part for each client reads. */
  readonly base: ReadonlySet<Vm>;
  /**
   * A netvm's: for each qube its clients lead to, how many of them do. A client that only its own
   * leads to is read by its own part of the netvm's entries and /connected-ips alone.
   */
  readonly reach: ReadonlyMap<Vm, number>;
}

export function qubesDbSources(vm: Vm): QubesDbSources {
  const base = new Set<Vm>();
  follow(base, vm.app.adminVm);
  follow(base, vm);
  // A relay names the RemoteVMs it relays for.
  for (const remote of relayedRemotes(vm)) base.add(remote);
  const reach = new Map<Vm, number>();
  // A netvm lists every client's address (/connected-ips), and so reads what their addresses read.
  if (vm.bool('provides_network')) {
    for (const client of connectedVms(vm.app, vm)) {
      const own = new Set<Vm>();
      follow(own, client);
      for (const qube of own) reach.set(qube, (reach.get(qube) ?? 0) + 1);
    }
  }
  return { all: new Set([...base, ...reach.keys()]), base, reach };
}

/** Adds `qube` and what it leads to by template, netvm, guivm and audiovm. */
function follow(sources: Set<Vm>, qube: Vm | null): void {
  if (qube === null || sources.has(qube)) return;
  sources.add(qube);
  follow(sources, qube.template);
  follow(sources, qube.netvm);
  follow(sources, linked(qube, 'guivm'));
  follow(sources, linked(qube, 'audiovm'));
}

const linked = (qube: Vm, prop: 'guivm' | 'audiovm'): Vm | null =>
  qube.props.has(prop) ? ((qube.props.tryGet(prop) as Vm | null | undefined) ?? null) : null;

/** The RemoteVMs whose relayvm is `vm`. */
function relayedRemotes(vm: Vm): Vm[] {
  return vm.app.domains
    .list()
    .filter((remote) => remote.klass === 'RemoteVM' && remote.props.tryGet(P_REMOTE.relayvm) === vm);
}

/**
 * The domains an event can newly concern, beyond those whose qubesDbSources hold its subject: all
 * of them for an event about no qube (a global property; those the entries read fan out as events
 * about each qube that follows them, but a default may read one that does not); else, when the
 * subject started, stopped or changed netvm, its netvm, which held the subject among its sources
 * only if it was a client already; when a RemoteVM changed relayvm, its new relay. A template,
 * guivm or audiovm is read only by the qube that names it, which is a source of its own.
 */
export function newReadersOf(event: QubesEvent): 'all' | Vm | null {
  const subject = event.subject;
  if (subject === null) return 'all';
  const link = SOURCE_LINKS.exec(event.name)?.[1];
  if (link === 'relayvm') return (subject.props.tryGet(P_REMOTE.relayvm) as Vm | null | undefined) ?? null;
  return link === undefined ? null : subject.netvm;
}

const SOURCE_LINKS = /^property-(?:set|reset|del):(netvm|xid|relayvm)$/;

/** get_default_user: a boot mode may name its own default user. */
function defaultUser(vm: Vm): string {
  const user = vm.props.tryGet(P.default_user) ?? 'user';
  const bootmode = vm.props.has('bootmode') ? (vm.props.tryGet(P.bootmode) ?? 'default') : 'default';
  if (bootmode === 'default') return user;
  return vm.featureWithTemplate(`boot-mode.default-user.${bootmode}`) ?? user;
}

/** The domain id another qube is told of a GUI or audio domain while that runs; dom0's is always 0. */
function runningXid(vm: Vm): string | undefined {
  if (vm.isAdminVm) return '0';
  return vm.xid >= 0 ? String(vm.xid) : undefined;
}

function vmType(vm: Vm, providesNetwork: boolean): string {
  if (vm.klass === 'TemplateVM') return 'TemplateVM';
  if (providesNetwork) return vm.netvm ? 'ProxyVM' : 'NetVM';
  return 'AppVM';
}

/** Upstream's connected_vms of a netvm that are running or starting (a starting client's rules come first). */
export function runningClients(netvm: Vm): Vm[] {
  return netvm.app.domains.list().filter((vm) => isRunningClient(netvm, vm));
}

function isRunningClient(netvm: Vm, vm: Vm): boolean {
  return vm.netvm === netvm && vm.powerState !== 'Halted';
}

/**
 * What upstream's netvm mixin writes into a netvm's QubesDB for its clients
 * (reload_connected_ips, set_mapped_ip_info_for_vm, reload_firewall_for_vm):
 * the anti-spoofing address lists (every client), each running client's visible address,
 * and its firewall under /qubes-firewall/<ip>/ with the empty
 * /qubes-firewall/<ip> marker last, which is what the netvm's daemon acts on.
 */
function netvmClientEntries(
  netvm: Vm,
  now: number,
  parts?: Map<Vm, Map<string, string>>,
): [string, string][] {
  const clients = runningClients(netvm);
  const entries = connectedIpsEntries(netvm);
  const mapped = clients.map((vm) => clientAddressEntries(vm));
  const firewall = clients.map((vm) => clientFirewallEntries(vm, now));
  // Every client's address before any firewall, as upstream's domain-spawn handlers write them.
  for (const part of [...mapped, ...firewall]) entries.push(...part);
  clients.forEach((vm, i) => parts?.set(vm, new Map([...(mapped[i] ?? []), ...(firewall[i] ?? [])])));
  return entries;
}

const propString = (vm: Vm, name: string): string => {
  const value = vm.props.has(name) ? vm.props.tryGet(name) : undefined;
  return value === null || value === undefined ? '' : String(value);
};

/**
 * Upstream's anti-spoofing lists name every client, running or not, by name: the netvm then
 * drops packets from its uplink that claim any client's address.
 */
export function connectedIpsEntries(netvm: Vm): [string, string][] {
  const connected = connectedVms(netvm.app, netvm);
  const addresses = (name: string): string =>
    connected
      .map((vm) => propString(vm, name))
      .filter(Boolean)
      .join(' ');
  return [
    ['/connected-ips', addresses('visible_ip')],
    ['/connected-ips6', addresses('visible_ip6')],
  ];
}

/** A running client's visible address and gateway, under its own address. */
function clientAddressEntries(vm: Vm): [string, string][] {
  const ip = propString(vm, 'ip');
  if (!ip) return [];
  const entries: [string, string][] = [];
  const visibleIp = propString(vm, 'visible_ip');
  const visibleGateway = propString(vm, 'visible_gateway');
  if (visibleIp) entries.push([`/mapped-ip/${ip}/visible-ip`, visibleIp]);
  if (visibleGateway) entries.push([`/mapped-ip/${ip}/visible-gateway`, visibleGateway]);
  return entries;
}

/** A running client's rules for each of its addresses, each followed by its marker. */
function clientFirewallEntries(vm: Vm, now: number): [string, string][] {
  const entries: [string, string][] = [];
  for (const family of [4, 6] as const) {
    const ip = propString(vm, family === 4 ? 'ip' : 'ip6');
    if (!ip) continue;
    const base = `/qubes-firewall/${ip}`;
    for (const [key, value] of firewallQdbEntries(publishedRules(vm), family, now))
      entries.push([`${base}/${key}`, value]);
    entries.push([base, '']);
  }
  return entries;
}

/**
 * One client's part of its netvm's entries (its visible address, its firewall): empty unless it
 * is a running client of `netvm`. The same entries netvmClientEntries gives for it.
 */
export function netvmClientPart(netvm: Vm, client: Vm, now: number): Map<string, string> {
  if (!isRunningClient(netvm, client)) return new Map();
  return new Map([...clientAddressEntries(client), ...clientFirewallEntries(client, now)]);
}

/**
 * The rules a netvm is given for a running client. One whose firewall.xml could not be loaded
 * gets none, so the drop policy alone stands: it may run (from before the daemon started, or
 * given a netvm while running), and a netvm's entries cannot refuse.
 */
export function publishedRules(client: Vm): readonly FirewallRule[] {
  const state = client.firewallState;
  return 'rules' in state ? state.rules : [];
}

/**
 * Firewall.qdb_entries(addr_family): the policy (always drop after the
 * rules), then each rule that has not expired and is not for the other
 * address family, keyed by its position in the whole list (so numbers may
 * skip), in upstream's QubesDB form (options by their order, ports always a
 * range, no expire or comment).
 */
export function firewallQdbEntries(
  rules: readonly FirewallRule[],
  family: 4 | 6,
  now: number,
): [string, string][] {
  const entries: [string, string][] = [['policy', 'drop']];
  const otherFamily = family === 4 ? 'dst6' : 'dst4';
  rules.forEach((rule, index) => {
    if (isExpired(rule, now) || rule.dsthost?.type === otherFamily) return;
    entries.push([String(index).padStart(4, '0'), qdbRule(rule)]);
  });
  return entries;
}

/** Rule.rule: options sorted by upstream's (order, name): action; dsthost, proto, specialtarget; dstports, icmptype. */
function qdbRule(rule: FirewallRule): string {
  const parts = [`action=${rule.action}`];
  if (rule.dsthost) parts.push(`${rule.dsthost.type}=${rule.dsthost.value}`);
  if (rule.proto) parts.push(`proto=${rule.proto}`);
  if (rule.specialtarget) parts.push(`specialtarget=${rule.specialtarget}`);
  if (rule.dstports) parts.push(`dstports=${rule.dstports[0]}-${rule.dstports[1]}`);
  if (rule.icmptype !== undefined) parts.push(`icmptype=${rule.icmptype}`);
  return parts.join(' ');
}
