import { PermissionDenied, ProtocolError, QubesVMNotRunningError, pyRepr } from '../../model/errors.js';
import type { Vm } from '../../model/vm.js';
import type { CallContext } from '../call-context.js';
import type { MethodSpec } from '../method.js';

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
 * Reads and checks the domain's requests. Every value is decoded first, as
 * upstream's dict comprehension does: a non-ASCII one fails the call without
 * an answer (upstream's strict decode) before any other check. Then each value
 * must be from upstream's safe set (ProtocolError quoting it, upstream 4.4's
 * enforce); our own bounds and feature-name check refuse with PermissionDenied.
 */
function untrustedFeatures(db: UntrustedQubesDb): Map<string, string> {
  const keys = db.list(FEATURES_REQUEST_PREFIX);
  if (keys.length > MAX_REQUESTED_FEATURES) throw new PermissionDenied('');
  const requested = new Map<string, string>();
  for (const key of keys) {
    const raw = db.read(key);
    if (raw === undefined) continue;
    if (raw.some((byte) => byte > 0x7f)) throw new Error(`non-ASCII value in ${key}`);
    requested.set(key.slice(FEATURES_REQUEST_PREFIX.length), raw.toString('ascii'));
  }
  for (const [name, value] of requested) {
    if (!SAFE_NAME.test(name) || value.length > MAX_REQUESTED_VALUE) throw new PermissionDenied('');
    if (!SAFE_VALUE.test(value)) throw new ProtocolError(`Value outside safe set: ${VALUE_SAFE_SET}`);
  }
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

/**
 * upstream's CoreFeatures: only a qube without a template speaks for its own
 * software. The os-release strings first (os-version and os-eol only in their
 * shapes, others ignored as upstream, which logs them), then the booleans.
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

/** upstream's WindowsFeatures sets `os` only to one of these (its Windows defaults are not ours yet). */
const GUEST_OS = new Set(['Windows', 'Linux']);

function guestOs(vm: Vm, requested: ReadonlyMap<string, string>): void {
  if (vm.template) return;
  const os = requested.get('os');
  if (os !== undefined && GUEST_OS.has(os)) vm.features.set('os', os);
}

/**
 * upstream's supported-feature/-service/-rpc handlers: the announced set
 * (value '1' only) replaces the previous one; an empty announcement changes
 * nothing, so a faulty or manual request cannot clear them all.
 */
function supportedSet(vm: Vm, requested: ReadonlyMap<string, string>, prefix: string): void {
  const wanted = new Set(
    [...requested].filter(([n, v]) => n.startsWith(prefix) && v === '1').map(([n]) => n),
  );
  if (wanted.size === 0) return;
  const before = vm.features.names().filter((n) => n.startsWith(prefix) && vm.features.get(n) !== '');
  for (const name of wanted) if (!before.includes(name)) vm.features.set(name, TRUE);
  for (const name of before) if (!wanted.has(name)) vm.features.remove(name);
}

/** What upstream's extensions do with a request, after `features-request` has been fired with it. */
function applyRequest(vm: Vm, requested: ReadonlyMap<string, string>): void {
  vm.events.fire(vm, 'features-request', { untrusted_features: dictRepr(requested) });
  coreFeatures(vm, requested);
  guestOs(vm, requested);
  if (!vm.template) {
    supportedSet(vm, requested, 'supported-feature.');
    supportedSet(vm, requested, 'supported-service.');
  }
  supportedSet(vm, requested, 'supported-rpc.');
}

/** Where Qubes Windows Tools write what qubes.NotifyTools reads, and the only keys read there. */
export const NOTIFY_TOOLS_PREFIX = '/qubes-tools/';
const NOTIFY_TOOLS_KEYS = ['qrexec', 'gui', 'gui-emulated', 'default-user', 'os'] as const;
const TOOLS_SAFE_VALUE = /^[A-Za-z0-9]+$/;

/**
 * qubes.NotifyTools' five keys under `/qubes-tools/`: an absent or empty key
 * is left out; a value must be ASCII (as in untrustedFeatures) and
 * alphanumeric (ProtocolError, upstream 4.4's enforce), within our bound.
 */
function untrustedTools(db: UntrustedQubesDb): Map<string, string> {
  const requested = new Map<string, string>();
  for (const name of NOTIFY_TOOLS_KEYS) {
    const raw = db.read(NOTIFY_TOOLS_PREFIX + name);
    if (raw === undefined || raw.length === 0) continue;
    if (raw.some((byte) => byte > 0x7f)) throw new Error(`non-ASCII value in ${NOTIFY_TOOLS_PREFIX}${name}`);
    if (raw.length > MAX_REQUESTED_VALUE) throw new PermissionDenied('');
    const value = raw.toString('ascii');
    if (!TOOLS_SAFE_VALUE.test(value)) throw new ProtocolError(`Value outside safe set: ${ALNUM}`);
    requested.set(name, value);
  }
  return requested;
}

/**
 * The misc socket's feature requests. qubes.FeaturesRequest: the calling
 * domain's `/features-request/*` keys, read from dom0's copy of its QubesDB,
 * fire `features-request` on it and then go through upstream's extensions;
 * what none of them accepts is ignored. qubes.NotifyTools, upstream's legacy
 * form kept for Qubes Windows Tools: `/qubes-tools/{qrexec,gui,gui-emulated,
 * default-user,os}` fire the same event and extensions (`default-user` is
 * ignored by them, as upstream's core features since Qubes 4.0).
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
