import { PermissionDenied, ProtocolError, QubesVMNotRunningError, pyRepr } from '../../model/errors.js';
import { isAscii } from '../../model/validate.js';
import type { Vm } from '../../model/vm.js';
import type { CallContext } from '../call-context.js';
import type { MethodSpec } from '../method.js';
import { windowsFeatures } from './windows-features.js';

/** Where a domain writes the features it asks for, one key each (upstream's qvm-features-request). */
export const FEATURES_REQUEST_PREFIX = '/features-request/';

/** What the service reads of a domain's QubesDB: the copy dom0 holds, filled by the domain itself. */
export interface UntrustedQubesDb {
  list(prefix: string): string[];
  read(path: string): Buffer | undefined;
}

/**
 * Beyond upstream, which bounds a request only by QubesDB's limits: no
 * software announces more than this many features, or longer values.
 */
export const MAX_REQUESTED_FEATURES = 1024;
export const MAX_REQUESTED_VALUE = 255;

/** Python's string.ascii_letters + string.digits, as upstream's refusals quote their safe sets. */
const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
/** Upstream 4.4's safe_set for requested values; names are held to admin.vm.feature.Set's characters. */
const VALUE_SAFE_SET = `${ALNUM}-.,_= `;
const SAFE_VALUE = /^[A-Za-z0-9\-.,_= ]*$/;
const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

/** Booleans the template's agent announces; the first three only while dom0 has not set them. */
const SET_ONCE = ['qrexec', 'gui', 'gui-emulated'] as const;
const FREE_BOOLEANS = ['qubes-firewall', 'vmexec'] as const;

/**
 * Reads and checks the domain's requests as upstream does: every value is
 * decoded first, as its dict comprehension does, a non-ASCII one failing the
 * call without an answer (upstream's strict decode); then each value must be
 * from upstream's safe set (ProtocolError quoting it, upstream 4.4's enforce).
 * Our own bounds and feature-name check come last, so a request upstream
 * refuses is refused as upstream does. What is read before them is bounded
 * by dom0's copy of the domain's QubesDB: at most MAX_DOMAIN_DB_KEYS keys,
 * each value shorter than QDB_MAX_DATA.
 */
function untrustedFeatures(db: UntrustedQubesDb): Map<string, string> {
  const requested = new Map<string, string>();
  for (const key of db.list(FEATURES_REQUEST_PREFIX)) {
    const raw = db.read(key);
    if (raw === undefined) continue;
    if (!isAscii(raw)) throw new Error(`non-ASCII value in ${key}`);
    requested.set(key.slice(FEATURES_REQUEST_PREFIX.length), raw.toString('ascii'));
  }
  for (const value of requested.values())
    if (!SAFE_VALUE.test(value)) throw new ProtocolError(`Value outside safe set: ${VALUE_SAFE_SET}`);
  if (requested.size > MAX_REQUESTED_FEATURES) throw new PermissionDenied('');
  for (const [name, value] of requested)
    if (!SAFE_NAME.test(name) || value.length > MAX_REQUESTED_VALUE) throw new PermissionDenied('');
  return requested;
}

/** Python's str() of the dict upstream passes as the event's untrusted_features. */
function dictRepr(features: ReadonlyMap<string, string>): string {
  return `{${[...features].map(([name, value]) => `${pyRepr(name)}: ${pyRepr(value)}`).join(', ')}}`;
}

const TRUE = '1';
const FALSE = '';

/** os-version: digits, dots and dashes, starting with a digit (upstream's CoreFeatures). */
const OS_VERSION = /^[0-9][0-9.-]*$/;
/** qubes-agent-version: upstream's `[0-9]{1,3}\.[0-9]{1,3}`, whole. */
const AGENT_VERSION = /^[0-9]{1,3}\.[0-9]{1,3}$/;

/** os-eol: a real date written YYYY-MM-DD, as Python's date.fromisoformat takes it. */
function isIsoDate(value: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return year >= 1 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** What a qube says of each of its boot modes: kernel options, a label, a default user. */
const BOOT_MODE_DETAILS = ['boot-mode.kernelopts.', 'boot-mode.name.', 'boot-mode.default-user.'] as const;
/** upstream's bound on the entries of one boot-mode announcement. */
const MAX_BOOT_MODE_ENTRIES = 64;

/** The mode of a `boot-mode.<what>.<mode>` name; none for any other shape. */
function bootModeOf(name: string): string | undefined {
  const parts = name.split('.');
  return parts.length === 3 && parts[0] === 'boot-mode' && parts[2] !== '' ? parts[2] : undefined;
}

/**
 * upstream's boot-mode announcement: the modes a qube offers, each with its
 * kernel options ('default' is reserved and has none), and a label and a
 * default user for those modes (a label for 'default' too). It replaces the
 * previous one whole unless it is empty, holds more than 64 entries, or
 * repeats a value among its labels and users (upstream counts them
 * together). Then the qube's active mode, and the defaults it proposes for
 * qubes based on it (appvm-default only from a template) or cloned from it,
 * are taken when they name one of its modes, or 'default'.
 */
function bootModes(vm: Vm, requested: ReadonlyMap<string, string>): void {
  const announced = new Map<string, string>();
  for (const [name, value] of requested) {
    const mode = bootModeOf(name);
    if (name.startsWith('boot-mode.kernelopts.') && mode !== undefined && mode !== 'default')
      announced.set(name, value);
  }
  const labels: string[] = [];
  for (const [name, value] of requested) {
    const mode = bootModeOf(name);
    if (mode === undefined || (mode !== 'default' && !announced.has(`boot-mode.kernelopts.${mode}`)))
      continue;
    if (
      name.startsWith('boot-mode.name.') ||
      (name.startsWith('boot-mode.default-user.') && mode !== 'default')
    ) {
      announced.set(name, value);
      labels.push(value);
    }
  }
  if (
    announced.size > 0 &&
    announced.size <= MAX_BOOT_MODE_ENTRIES &&
    new Set(labels).size === labels.length
  ) {
    for (const name of vm.features.names())
      if (BOOT_MODE_DETAILS.some((prefix) => name.startsWith(prefix)) && !announced.has(name))
        vm.features.remove(name);
    for (const [name, value] of announced) vm.features.set(name, value);
  }
  for (const choice of ['active', 'appvm-default', 'standalone-default'] as const) {
    const mode = requested.get(`boot-mode.${choice}`);
    if (mode === undefined || (mode !== 'default' && !vm.features.has(`boot-mode.kernelopts.${mode}`)))
      continue;
    if (choice === 'appvm-default' && !vm.props.has('appvm_default_bootmode')) continue;
    vm.features.set(`boot-mode.${choice}`, mode);
  }
}

/**
 * upstream's CoreFeatures: only a qube without a template speaks for its own
 * software. The os-release strings first (os-version and os-eol only in their
 * shapes, others ignored as upstream, which logs them), then the agent's
 * version, the boot modes and the booleans.
 */
function coreFeatures(vm: Vm, requested: ReadonlyMap<string, string>): void {
  if (vm.template) return;
  for (const name of ['os-distribution', 'os-distribution-like'] as const) {
    const value = requested.get(name);
    if (value) vm.features.set(name, value);
  }
  const version = requested.get('os-version');
  if (version && OS_VERSION.test(version)) vm.features.set('os-version', version);
  const eol = requested.get('os-eol');
  if (eol && isIsoDate(eol)) vm.features.set('os-eol', eol);
  const booleans = new Map<string, string>();
  for (const name of [...SET_ONCE, ...FREE_BOOLEANS]) {
    const value = requested.get(name);
    if (value === '1' || value === '0') booleans.set(name, value === '1' ? TRUE : FALSE);
  }
  const agentVersion = requested.get('qubes-agent-version');
  if (agentVersion !== undefined && AGENT_VERSION.test(agentVersion))
    vm.features.set('qubes-agent-version', agentVersion);
  bootModes(vm, requested);
  // VMs may switch anon-timezone on, never off.
  if (requested.get('anon-timezone') === '1') vm.features.set('anon-timezone', TRUE);
  const qrexecBefore = (vm.features.get('qrexec') ?? '') !== '';
  for (const name of SET_ONCE) {
    const value = booleans.get(name);
    if (value !== undefined && !vm.features.has(name)) vm.features.set(name, value);
  }
  for (const name of FREE_BOOLEANS) {
    const value = booleans.get(name);
    if (value !== undefined) vm.features.set(name, value);
  }
  // The first announcement of qrexec finishes the template's setup, as upstream.
  if (!qrexecBefore && (vm.features.get('qrexec') ?? '') !== '') vm.events.fire(vm, 'template-postinstall');
}

const APPARMOR_SERVICE = 'supported-service.apparmor';

/**
 * upstream's supported-feature/-service/-rpc handlers: the announced set
 * (value '1' only) replaces the previous one; an empty announcement changes
 * nothing, so a faulty or manual request cannot clear them all. As upstream's
 * services extension, announcing AppArmor turns `apparmor` on unless it is
 * set, and withdrawing it removes an `apparmor` that is on.
 */
function supportedSet(vm: Vm, requested: ReadonlyMap<string, string>, prefix: string): void {
  const wanted = new Set(
    [...requested].filter(([n, v]) => n.startsWith(prefix) && v === '1').map(([n]) => n),
  );
  if (wanted.size === 0) return;
  const before = vm.features.names().filter((n) => n.startsWith(prefix) && vm.features.get(n) !== '');
  for (const name of wanted) {
    if (before.includes(name)) continue;
    vm.features.set(name, TRUE);
    if (name === APPARMOR_SERVICE && !vm.features.has('apparmor')) vm.features.set('apparmor', TRUE);
  }
  for (const name of before) {
    if (wanted.has(name)) continue;
    vm.features.remove(name);
    if (name === APPARMOR_SERVICE && vm.features.get('apparmor') === TRUE) vm.features.remove('apparmor');
  }
}

/**
 * What upstream's extensions do with a request, in the order its event runs
 * them: the plain handlers (WindowsFeatures and the supported-* ones, whose
 * order among themselves upstream leaves open) while the event fires; the
 * qube's own handlers, which feed admin.Events, after them; CoreFeatures, the
 * one coroutine, last. A refusal in a plain handler ends the call there: no
 * event for subscribers, no CoreFeatures.
 */
function applyRequest(vm: Vm, requested: ReadonlyMap<string, string>): void {
  windowsFeatures(vm, requested);
  if (!vm.template) {
    supportedSet(vm, requested, 'supported-feature.');
    supportedSet(vm, requested, 'supported-service.');
  }
  supportedSet(vm, requested, 'supported-rpc.');
  vm.events.fire(vm, 'features-request', { untrusted_features: dictRepr(requested) });
  coreFeatures(vm, requested);
}

/** Where Qubes Windows Tools write what qubes.NotifyTools reads, and the only keys read there. */
export const NOTIFY_TOOLS_PREFIX = '/qubes-tools/';
const NOTIFY_TOOLS_KEYS = ['qrexec', 'gui', 'gui-emulated', 'default-user', 'os'] as const;
const TOOLS_SAFE_VALUE = /^[A-Za-z0-9]+$/;

/**
 * qubes.NotifyTools' five keys under `/qubes-tools/`, in upstream's order: an
 * absent or empty key is left out; a value must be ASCII (as in
 * untrustedFeatures) and then alphanumeric (ProtocolError, upstream 4.4's
 * enforce), key by key. Our bound comes after, as in untrustedFeatures.
 */
function untrustedTools(db: UntrustedQubesDb): Map<string, string> {
  const requested = new Map<string, string>();
  for (const name of NOTIFY_TOOLS_KEYS) {
    const raw = db.read(NOTIFY_TOOLS_PREFIX + name);
    if (raw === undefined || raw.length === 0) continue;
    if (!isAscii(raw)) throw new Error(`non-ASCII value in ${NOTIFY_TOOLS_PREFIX}${name}`);
    const value = raw.toString('ascii');
    if (!TOOLS_SAFE_VALUE.test(value)) throw new ProtocolError(`Value outside safe set: ${ALNUM}`);
    requested.set(name, value);
  }
  for (const value of requested.values())
    if (value.length > MAX_REQUESTED_VALUE) throw new PermissionDenied('');
  return requested;
}

/**
 * The misc socket's feature requests. qubes.FeaturesRequest: the calling
 * domain's `/features-request/*` keys, read from dom0's copy of its QubesDB,
 * fire `features-request` on it and then go through upstream's extensions;
 * what none of them accepts is ignored. qubes.NotifyTools, upstream's legacy
 * form kept for Qubes Windows Tools: `/qubes-tools/{qrexec,gui,gui-emulated,
 * default-user,os}` fire the same event and extensions (`default-user` is
 * ignored by them, as upstream's core features since Qubes 4.0). A caller
 * whose database dom0 does not serve gets QubesVMNotRunningError where
 * upstream fails on its missing database without an answer: no qrexec call
 * comes from a halted qube, so only a local client meets it.
 */
export function featuresRequestMethods(qubesdb: (vm: Vm) => UntrustedQubesDb | undefined): MethodSpec[] {
  const method = (name: string, read: (db: UntrustedQubesDb) => Map<string, string>): MethodSpec => ({
    name,
    scope: 'global',
    access: 'w',
    dest: 'dom0',
    arg: 'none',
    payload: 'none',
    noPolicy: true,
    handler: (ctx: CallContext): undefined => {
      const vm = ctx.src;
      const db = qubesdb(vm);
      if (!db) throw QubesVMNotRunningError.forVm(vm.name);
      applyRequest(vm, read(db));
      return undefined;
    },
  });
  return [method('qubes.FeaturesRequest', untrustedFeatures), method('qubes.NotifyTools', untrustedTools)];
}
