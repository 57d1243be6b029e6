/**
 * Properties of the misc socket's services on what a hostile qube can send:
 * qubes.FeaturesRequest (its /features-request/ keys), qubes.NotifyTools (its
 * /qubes-tools/ keys) and qubes.NotifyUpdates (a payload). Every call is
 * answered with upstream's bytes and leaves the features upstream's rules
 * would leave, as a small model of those rules (written from
 * qubes-core-admin's misc API and its features-request extensions) computes
 * them; only odysseyd's own documented bounds refuse more.
 */
import 'reflect-metadata';

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { QubesDb } from '@odyssey/qubesdb';
import { SocketVchanTransport } from '@odyssey/vchan';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MAX_REQUESTED_FEATURES, MAX_REQUESTED_VALUE } from '../../src/api/methods/features-request.js';
import { HOST_TOKENS } from '../../src/daemon/after-start.js';
import type { QubesEvent } from '../../src/model/events.js';
import type { Vm } from '../../src/model/vm.js';
import { exc, rawCall, startDaemon, type TestDaemon } from '../support/harness.js';

const SEED = 20261208;

/** A fixed clock in dom0's local time. */
const NOW = new Date(2026, 11, 4, 22, 5, 9).getTime();
const NOW_TEXT = '2026-12-04 22:05:09';

type Features = Map<string, string>;

/** Each caller, by what decides upstream's rules: the class, and whether it is template-based. */
const CALLERS = {
  tpl: { updateable: true, templateBased: false, isTemplate: true },
  alone: { updateable: true, templateBased: false, isTemplate: false },
  work: { updateable: false, templateBased: true, isTemplate: false },
  disp: { updateable: false, templateBased: true, isTemplate: false },
} as const;
type Caller = keyof typeof CALLERS;
const CALLER_NAMES = Object.keys(CALLERS) as Caller[];

// ---------------------------------------------------------------------------
// The model of upstream's rules.

/** What upstream answers: OK, an exception, or nothing (a Python error outside its own kinds). */
type Reply =
  | { readonly kind: 'ok' }
  | { readonly kind: 'exception'; readonly wire: string }
  | { readonly kind: 'abort' };

/** The two properties upstream's WindowsFeatures sets; maxmem 'default' while it has no value of its own. */
interface WindowsProps {
  readonly maxmem: number | 'default';
  readonly qrexec_timeout: number;
}

/** What each caller holds before every call (the daemon's callers give up on qrexec at once). */
const INITIAL_PROPS: WindowsProps = { maxmem: 'default', qrexec_timeout: 1 };

interface Outcome {
  readonly reply: Reply;
  readonly features: Features;
  readonly props: WindowsProps;
  /** Python's str() of the untrusted_features given to the features-request event, when it fired. */
  readonly event?: string;
  /** The caller's events but the pre-events, in the order admin.Events shows them. */
  readonly fired: readonly string[];
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const REQUEST_SAFE_SET = `${ALNUM}-.,_= `;

/** Python truthiness of a stored feature value. */
const truthy = (value: string | undefined): boolean => value !== undefined && value !== '';

/** datetime.date.fromisoformat on a string already in the YYYY-MM-DD shape. */
function realDate(text: string): boolean {
  const [y, m, d] = text.split('-').map(Number) as [number, number, number];
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= (days[m - 1] ?? 0);
}

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

/** A caller's features that note the event each change fires, in order. */
class Recorded extends Map<string, string> {
  readonly fired: string[] = [];

  static from(before: Features): Recorded {
    const recorded = new Recorded();
    for (const [name, value] of before) Map.prototype.set.call(recorded, name, value);
    return recorded;
  }

  override set(name: string, value: string): this {
    this.fired.push(`domain-feature-set:${name}`);
    return super.set(name, value);
  }

  override delete(name: string): boolean {
    if (this.has(name)) this.fired.push(`domain-feature-delete:${name}`);
    return super.delete(name);
  }
}

/** The supported-feature/-service/-rpc handlers, with the service handler's apparmor companion. */
function supported(features: Features, request: Features, prefix: string): void {
  const wanted = [...request].filter(([k, v]) => k.startsWith(prefix) && v === '1').map(([k]) => k);
  if (wanted.length === 0) return;
  const old = [...features].filter(([k, v]) => k.startsWith(prefix) && v !== '').map(([k]) => k);
  for (const name of wanted) {
    if (old.includes(name)) continue;
    features.set(name, '1');
    if (name === 'supported-service.apparmor' && !features.has('apparmor')) features.set('apparmor', '1');
  }
  for (const name of old) {
    if (wanted.includes(name)) continue;
    features.delete(name);
    if (name === 'supported-service.apparmor' && features.get('apparmor') === '1')
      features.delete('apparmor');
  }
}

/** The boot modes a template or standalone announces (CoreFeatures). */
function bootModes(features: Features, request: Features, isTemplate: boolean): void {
  const modeOf = (key: string): string | undefined => {
    const parts = key.split('.');
    return parts.length === 3 && parts[2] !== '' ? parts[2] : undefined;
  };
  const isInfo = (k: string): boolean =>
    ['boot-mode.kernelopts.', 'boot-mode.name.', 'boot-mode.default-user.'].some((p) => k.startsWith(p));
  const old = [...features.keys()].filter(isInfo);
  const info = new Map<string, string>();
  for (const [k, v] of request) {
    const mode = modeOf(k);
    if (k.startsWith('boot-mode.kernelopts.') && mode !== undefined && mode !== 'default') info.set(k, v);
  }
  const labels: string[] = [];
  for (const [k, v] of request) {
    const mode = modeOf(k);
    if (!k.startsWith('boot-mode.') || mode === undefined) continue;
    if (!info.has(`boot-mode.kernelopts.${mode}`) && mode !== 'default') continue;
    const isName = k.startsWith('boot-mode.name.');
    const isUser = k.startsWith('boot-mode.default-user.');
    if (!isName && !isUser) continue;
    if (isUser && mode === 'default') continue;
    info.set(k, v);
    labels.push(v);
  }
  if (new Set(labels).size === labels.length && info.size <= 64 && info.size > 0) {
    for (const k of old) if (!info.has(k)) features.delete(k);
    for (const [k, v] of info) features.set(k, v);
  }
  for (const key of ['active', 'appvm-default', 'standalone-default']) {
    const value = request.get(`boot-mode.${key}`);
    if (value === undefined) continue;
    if (!features.has(`boot-mode.kernelopts.${value}`) && value !== 'default') continue;
    if (key === 'appvm-default' && !isTemplate) continue;
    features.set(`boot-mode.${key}`, value);
  }
}

/**
 * WindowsFeatures: the os a qube without a template announces; for Windows
 * with qrexec '1' in the request, rpc-clipboard, maxmem 0 and qrexec_timeout
 * 6000, and four features unless the caller has them. The callers are halted
 * here, so maxmem may always change.
 */
function windows(caller: Caller, features: Recorded, request: Features): WindowsProps {
  const os = request.get('os');
  if (CALLERS[caller].templateBased || (os !== 'Windows' && os !== 'Linux')) return INITIAL_PROPS;
  features.set('os', os);
  if (os !== 'Windows' || request.get('qrexec') !== '1') return INITIAL_PROPS;
  features.set('rpc-clipboard', '1');
  features.fired.push('property-set:maxmem', 'property-set:qrexec_timeout');
  const defaults = {
    'stubdom-qrexec': '1',
    'audio-model': 'ich6',
    timezone: 'localtime',
    'no-monitor-layout': '1',
  };
  for (const [name, value] of Object.entries(defaults)) if (!features.has(name)) features.set(name, value);
  return { maxmem: 0, qrexec_timeout: 6000 };
}

/**
 * The features-request extensions, on a copy of the caller's features, in
 * the order upstream's event runs them: the plain handlers (their order
 * among themselves is odysseyd's, upstream leaves it open), the event as
 * admin.Events sees it, then CoreFeatures, a coroutine.
 */
function applyRequest(caller: Caller, before: Features, request: Features): Omit<Outcome, 'reply'> {
  const features = Recorded.from(before);
  const event = `{${[...request].map(([k, v]) => `'${k}': '${v}'`).join(', ')}}`;
  const { templateBased, isTemplate } = CALLERS[caller];
  const props = windows(caller, features, request);
  if (!templateBased) {
    supported(features, request, 'supported-feature.');
    supported(features, request, 'supported-service.');
  }
  supported(features, request, 'supported-rpc.');
  features.fired.push('features-request');
  if (!templateBased) {
    for (const name of ['os-distribution', 'os-distribution-like']) {
      const value = request.get(name);
      if (truthy(value)) features.set(name, value ?? '');
    }
    const version = request.get('os-version') ?? '';
    if (
      version !== '' &&
      [...version].every((c) => isDigit(c) || c === '.' || c === '-') &&
      isDigit(version[0])
    )
      features.set('os-version', version);
    const eol = request.get('os-eol') ?? '';
    if (/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(eol) && realDate(eol)) features.set('os-eol', eol);
    const booleans = new Map<string, string>();
    for (const name of ['qrexec', 'gui', 'gui-emulated', 'qubes-firewall', 'vmexec']) {
      const value = request.get(name);
      if (value === '1' || value === '0') booleans.set(name, value === '1' ? '1' : '');
    }
    const agent = request.get('qubes-agent-version');
    if (agent !== undefined && /^[0-9]{1,3}\.[0-9]{1,3}$/.test(agent))
      features.set('qubes-agent-version', agent);
    bootModes(features, request, isTemplate);
    if (request.get('anon-timezone') === '1') features.set('anon-timezone', '1');
    const qrexecBefore = truthy(features.get('qrexec'));
    for (const name of ['qrexec', 'gui', 'gui-emulated']) {
      const value = booleans.get(name);
      if (value !== undefined && !features.has(name)) features.set(name, value);
    }
    for (const name of ['qubes-firewall', 'vmexec']) {
      const value = booleans.get(name);
      if (value !== undefined) features.set(name, value);
    }
    if (!qrexecBefore && truthy(features.get('qrexec'))) features.fired.push('template-postinstall');
  }
  return { features: new Map(features), props, event, fired: features.fired };
}

const refused = (before: Features, reply: Reply): Outcome => ({
  reply,
  features: new Map(before),
  props: INITIAL_PROPS,
  fired: [],
});
const protocolError = (safe: string): Reply => ({
  kind: 'exception',
  wire: exc('ProtocolError', `Value outside safe set: ${safe}`),
});
/** odysseyd's own bounds, past upstream's checks: names the Admin API can carry, counts and lengths. */
const PERMISSION_DENIED: Reply = { kind: 'exception', wire: exc('PermissionDenied', '') };

/** qubes.FeaturesRequest: every value decoded strictly, then held to the safe set, in key order. */
function upstreamFeaturesRequest(caller: Caller, before: Features, entries: [string, Buffer][]): Outcome {
  if (entries.some(([, v]) => v.some((b) => b > 0x7f))) return refused(before, { kind: 'abort' });
  const request = new Map(
    entries.map(([k, v]) => [k.slice('/features-request/'.length), v.toString('ascii')]),
  );
  for (const value of request.values())
    if (![...value].every((c) => REQUEST_SAFE_SET.includes(c)))
      return refused(before, protocolError(REQUEST_SAFE_SET));
  if (
    request.size > MAX_REQUESTED_FEATURES ||
    [...request].some(([k, v]) => !/^[A-Za-z0-9._-]+$/.test(k) || v.length > MAX_REQUESTED_VALUE)
  )
    return refused(before, PERMISSION_DENIED);
  return { reply: { kind: 'ok' }, ...applyRequest(caller, before, request) };
}

const TOOLS_KEYS = ['qrexec', 'gui', 'gui-emulated', 'default-user', 'os'];

/** qubes.NotifyTools: its five keys in order, each non-empty one decoded and held to letters and digits. */
function upstreamNotifyTools(caller: Caller, before: Features, db: ReadonlyMap<string, Buffer>): Outcome {
  const request = new Map<string, string>();
  for (const key of TOOLS_KEYS) {
    const raw = db.get(`/qubes-tools/${key}`);
    if (raw === undefined || raw.length === 0) continue;
    if (raw.some((b) => b > 0x7f)) return refused(before, { kind: 'abort' });
    const value = raw.toString('ascii');
    if (![...value].every((c) => ALNUM.includes(c))) return refused(before, protocolError(ALNUM));
    request.set(key, value);
  }
  if ([...request.values()].some((v) => v.length > MAX_REQUESTED_VALUE))
    return refused(before, PERMISSION_DENIED);
  return { reply: { kind: 'ok' }, ...applyRequest(caller, before, request) };
}

/** Python's limit on the digits int() converts (sys.int_info.default_max_str_digits). */
const PY_MAX_STR_DIGITS = 4300;

interface UpdatesOutcome {
  readonly reply: Reply;
  /** The features of tpl and alone after the call. */
  readonly tpl: Features;
  readonly alone: Features;
}

/** qubes.NotifyUpdates, for callers whose volumes are all up to date. */
function upstreamNotifyUpdates(
  caller: Caller,
  payload: Buffer,
  tplRunning: boolean,
  tpl: Features,
  alone: Features,
): UpdatesOutcome {
  const after = { tpl: new Map(tpl), alone: new Map(alone) };
  if (payload.length === 0)
    return { reply: { kind: 'exception', wire: exc('ProtocolError', 'expected payload') }, ...after };
  const count = payload.toString('latin1').replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, '');
  if (!/^[0-9]+$/.test(count))
    return {
      reply: { kind: 'exception', wire: exc('ProtocolError', 'Update count is not a digit') },
      ...after,
    };
  if (count.length > PY_MAX_STR_DIGITS) return { reply: { kind: 'abort' }, ...after };
  const available = /[1-9]/.test(count);
  const record = (features: Features): void => {
    if (truthy(features.get('updates-available')) && !available) features.set('last-update', NOW_TEXT);
    features.set('updates-available', available ? '1' : '');
    features.set('last-updates-check', NOW_TEXT);
  };
  if (CALLERS[caller].updateable) record(caller === 'tpl' ? after.tpl : after.alone);
  else if (!tplRunning && available) record(after.tpl);
  return { reply: { kind: 'ok' }, ...after };
}

/** The reply as the wire carries it. */
function wire(reply: Reply): string {
  if (reply.kind === 'ok') return '0\0';
  return reply.kind === 'exception' ? reply.wire : '';
}

// ---------------------------------------------------------------------------
// Hostile input.

/** Bytes as a failure report shows them: the start of a long value, and its length. */
const shown = (bytes: Buffer): string =>
  `${JSON.stringify(bytes.subarray(0, 40).toString('latin1'))}${bytes.length > 40 ? `... (${bytes.length} bytes)` : ''}`;

/** A Buffer that fast-check prints as `shown` does, since a counterexample may hold 60 kB of digits. */
const printable = (bytes: Buffer): Buffer =>
  Object.assign(bytes, { [fc.toStringMethod]: () => shown(bytes) });

/** Names a qube may write, as QubesDB's paths allow them after the 18 characters of the prefix. */
const hostileName = fc.stringMatching(/^[A-Za-z0-9_/.:@-]{1,45}$/).filter((n) => !n.endsWith('/'));

const knownName = fc.constantFrom(
  'qrexec',
  'gui',
  'gui-emulated',
  'qubes-firewall',
  'vmexec',
  'os',
  'os-distribution',
  'os-distribution-like',
  'os-version',
  'os-eol',
  'qubes-agent-version',
  'anon-timezone',
  'default-user',
  'service.cups',
  'updates-available',
  'apparmor',
  'internal',
  'supported-rpc.qubes.A',
  'supported-rpc.qubes.B',
  'supported-rpc.',
  'supported-feature.x',
  'supported-feature.y',
  'supported-service.apparmor',
  'supported-service.cups',
  'boot-mode.kernelopts.a',
  'boot-mode.kernelopts.b',
  'boot-mode.kernelopts.default',
  'boot-mode.kernelopts.',
  'boot-mode.kernelopts.a.b',
  'boot-mode.name.a',
  'boot-mode.name.b',
  'boot-mode.name.default',
  'boot-mode.default-user.a',
  'boot-mode.default-user.b',
  'boot-mode.default-user.default',
  'boot-mode.active',
  'boot-mode.appvm-default',
  'boot-mode.standalone-default',
  'boot-mode.other.a',
  'rpc-clipboard',
  'stubdom-qrexec',
  'audio-model',
  'timezone',
  'no-monitor-layout',
);

/** Values any feature may be sent: hostile characters, bytes, lengths around the bounds. */
const hostileValue: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc
      .constantFrom(
        '',
        'True',
        'a=b, c',
        'x'.repeat(MAX_REQUESTED_VALUE),
        'x'.repeat(MAX_REQUESTED_VALUE + 1),
        'x'.repeat(3071),
      )
      .map((s) => Buffer.from(s)),
  },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9\-.,_= ]{0,8}$/).map((s) => Buffer.from(s)) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '%',
        '%s',
        '\n',
        '1\n',
        '\t',
        '$',
        "'",
        '"',
        '\\',
        '\x7f',
        '\x01',
        '+',
        'é',
        '\u202e',
        '\0',
      )
      .map((s) => Buffer.from(s)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((a) => Buffer.from(a)) },
);

/** Values in the shapes upstream validates for this name, and their near misses. */
function plausibleValue(name: string): fc.Arbitrary<string> {
  if (
    name.startsWith('supported-') ||
    ['qrexec', 'gui', 'gui-emulated', 'qubes-firewall', 'vmexec', 'anon-timezone'].includes(name)
  )
    return fc.constantFrom('1', '1', '0', '', '2', '01');
  if (name.startsWith('boot-mode.kernelopts.')) return fc.constantFrom('quiet', 'boot-role=sysmaint', '');
  if (name.startsWith('boot-mode.name.') || name.startsWith('boot-mode.default-user.'))
    return fc.constantFrom('A', 'B', 'user', 'root', '');
  if (name.startsWith('boot-mode.')) return fc.constantFrom('a', 'b', 'default', 'c', '');
  switch (name) {
    case 'os':
      return fc.constantFrom('Windows', 'Linux', 'Plan9', 'linux');
    case 'os-version':
      return fc.constantFrom('12', '12.1', '1-2', '.1', '1a', '24.04 LTS');
    case 'os-eol':
      return fc.constantFrom(
        '2024-02-29',
        '2023-02-29',
        '0000-01-01',
        '0004-02-29',
        '2024-13-01',
        '2024-1-01',
      );
    case 'qubes-agent-version':
      return fc.constantFrom('4.3', '04.003', '1234.5', '4', '4.3.1');
    default:
      return fc.constantFrom('debian', 'ubuntu debian', 'user', '1');
  }
}

/** Only what a qube can put into dom0's copy of its QubesDB: the database refuses the rest (NUL, 3 KiB). */
const writable = ([path, value]: [string, Buffer]): boolean => {
  try {
    QubesDb.checkWrite(path, value);
    return true;
  } catch {
    return false;
  }
};

/** Entries under `prefix`, mostly with values in their name's shapes, each one the database takes. */
function entriesUnder(
  prefix: string,
  names: fc.Arbitrary<string>,
  maxLength: number,
): fc.Arbitrary<[string, Buffer][]> {
  const entry = names.chain((name) =>
    fc.tuple(
      fc.constant(prefix + name),
      fc
        .oneof(
          { weight: 5, arbitrary: plausibleValue(name).map((s) => Buffer.from(s)) },
          { weight: 1, arbitrary: hostileValue },
        )
        .map(printable),
    ),
  );
  return fc
    .uniqueArray(entry, { maxLength, selector: ([path]) => path })
    .map((pairs) => pairs.filter(writable));
}

const requestEntries = entriesUnder(
  '/features-request/',
  fc.oneof({ weight: 8, arbitrary: knownName }, { weight: 1, arbitrary: hostileName }),
  12,
);

/** What the caller holds before it asks: names its request touches, values true, false and other. */
const initialFeatures: fc.Arbitrary<[string, string][]> = fc.uniqueArray(
  fc.tuple(
    knownName.filter((n) => /^[A-Za-z0-9._-]+$/.test(n)),
    fc.constantFrom('', '1', '0', 'a', 'b', 'x'),
  ),
  { maxLength: 8, selector: ([name]) => name },
);

// ---------------------------------------------------------------------------
// The daemon.

let vchanDir: string;
let d: TestDaemon;
const events: QubesEvent[] = [];

beforeAll(async () => {
  vchanDir = await mkdtemp(join(tmpdir(), 'odyssey-misc-'));
  d = await startDaemon({
    clock: { now: () => NOW },
    vchan: new SocketVchanTransport({ localDomain: '0', dir: vchanDir }),
  });
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=alone label=red');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
  await d.ok('admin.vm.property.Set', 'work', 'template_for_dispvms', 'True');
  await d.ok('admin.vm.Create.DispVM', 'dom0', 'work', 'name=disp label=red');
  for (const [i, name] of CALLER_NAMES.entries()) {
    // No qrexec agent answers in these domains: dom0's qrexec gives up on them at once.
    await d.ok('admin.vm.property.Set', name, 'qrexec_timeout', '1');
    // Running as far as dom0's QubesDB goes: it serves the domain's database, which the tests fill.
    const vm = d.daemon.app.domains.get(name);
    vm.xid = 10 + i;
    d.daemon.app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
  }
  d.daemon.app.events.subscribe((event) => events.push(event));
}, 30_000);

afterAll(async () => {
  await d.stop();
  await rm(vchanDir, { recursive: true, force: true });
});

const vm = (name: string): Vm => d.daemon.app.domains.get(name);
const featuresOf = (name: string): Features => new Map(vm(name).features.entries());

function database(name: string): QubesDb {
  const db = d.daemon.container.resolve(HOST_TOKENS.QubesDb).database(name);
  if (!db) throw new Error(`${name} has no QubesDB`);
  return db;
}

/** Gives `name` exactly these features, and the properties a request may change their first values. */
function setFeatures(name: string, features: readonly [string, string][]): void {
  const subject = vm(name);
  for (const feature of subject.features.names()) subject.features.remove(feature);
  for (const [feature, value] of features) subject.features.set(feature, value);
  if (!subject.props.isDefault('maxmem')) subject.props.reset('maxmem');
  subject.props.set('qrexec_timeout', INITIAL_PROPS.qrexec_timeout);
}

const windowsProps = (name: string): WindowsProps => {
  const { props } = vm(name);
  return {
    maxmem: props.isDefault('maxmem') ? 'default' : Number(props.get('maxmem')),
    qrexec_timeout: Number(props.get('qrexec_timeout')),
  };
};

/** Fills the caller's /features-request/ or /qubes-tools/ with exactly these entries, as the qube would. */
function fill(name: string, prefix: string, entries: readonly [string, Buffer][]): void {
  const db = database(name);
  db.rm(prefix);
  for (const [path, value] of entries) db.write(path, value);
}

const misc = (): string => join(d.stateDir, 'run', 'qubesd.misc.sock');
const callMisc = (service: string, src: string, payload: Buffer = Buffer.alloc(0)): Promise<Buffer> =>
  rawCall(misc(), Buffer.concat([Buffer.from(`${service}+ ${src} keyword adminvm\0`), payload]));

/** Checks the call against the model: the reply's bytes, every domain's features, and the events. */
async function expectOutcome(
  service: string,
  caller: Caller,
  expected: Outcome,
  what: string,
): Promise<void> {
  const others = CALLER_NAMES.filter((n) => n !== caller).map((n) => [n, featuresOf(n)] as const);
  const before = featuresOf(caller);
  events.length = 0;
  const reply = await callMisc(service, caller);
  expect(reply.toString('latin1'), what).toBe(wire(expected.reply));
  expect(Object.fromEntries(featuresOf(caller)), what).toEqual(Object.fromEntries(expected.features));
  expect(windowsProps(caller), what).toEqual(expected.props);
  for (const [name, features] of others) expect(featuresOf(name), `${what}: ${name}`).toEqual(features);
  const own = events.filter((e) => e.subject === vm(caller) && !e.name.includes('-pre-')).map((e) => e.name);
  expect(own, what).toEqual(expected.fired);
  const fired = events.find((e) => e.name === 'features-request');
  if (expected.event === undefined) expect(fired, what).toBeUndefined();
  else expect(fired?.args, what).toEqual({ untrusted_features: expected.event });
  // Whatever the qube sent, what dom0 keeps of it is bounded: features, their values, the event.
  const after = featuresOf(caller);
  expect(after.size, what).toBeLessThanOrEqual(before.size + MAX_REQUESTED_FEATURES + 1);
  for (const [name, value] of after)
    if (before.get(name) !== value)
      expect(value.length, `${what}: ${name}`).toBeLessThanOrEqual(MAX_REQUESTED_VALUE);
  for (const event of events)
    expect(JSON.stringify(event.args ?? {}).length, what).toBeLessThan(MAX_REQUESTED_FEATURES * 400);
  // The daemon still serves the admin socket.
  expect((await d.call('admin.vm.List', 'dom0')).subarray(0, 2).toString('latin1')).toBe('0\0');
}

const describeEntries = (entries: readonly [string, Buffer][]): string => {
  const listed = entries.map(([k, v]) => `${k}=${shown(v)}`);
  return listed.length > 8
    ? `${listed.slice(0, 4).join(' ')} ... (${listed.length} entries)`
    : listed.join(' ');
};

describe('qubes.FeaturesRequest with hostile requests', () => {
  const check = async (
    caller: Caller,
    initial: [string, string][],
    entries: [string, Buffer][],
  ): Promise<void> => {
    setFeatures(caller, initial);
    fill(caller, '/features-request/', entries);
    const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const expected = upstreamFeaturesRequest(caller, featuresOf(caller), sorted);
    await expectOutcome('qubes.FeaturesRequest', caller, expected, `${caller} ${describeEntries(sorted)}`);
  };
  const bulk = (n: number, last: [string, Buffer][] = []): [string, Buffer][] => [
    ...Array.from({ length: n }, (_, i): [string, Buffer] => [
      `/features-request/supported-rpc.s${i}`,
      Buffer.from('1'),
    ]),
    ...last,
  ];

  it("answers with upstream's bytes and sets what upstream's extensions set, for any caller", async () => {
    const r = (name: string, value: string): [string, Buffer] => [
      `/features-request/${name}`,
      printable(Buffer.from(value)),
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...CALLER_NAMES), initialFeatures, requestEntries, check),
      {
        numRuns: 1000,
        seed: SEED,
        examples: [
          // A name odysseyd refuses comes before a value upstream refuses: upstream's refusal is the answer.
          ['tpl', [], [r('a:b', '1'), r('b', '$')]],
          ['tpl', [], [r('a', 'x'.repeat(MAX_REQUESTED_VALUE + 1)), r('b', '%')]],
          // A boot mode announced by a template, and one chosen for its qubes.
          [
            'tpl',
            [['boot-mode.kernelopts.old', 'x']],
            [
              r('boot-mode.kernelopts.sysmaint', 'boot-role=sysmaint'),
              r('boot-mode.name.sysmaint', 'Maintenance'),
              r('boot-mode.default-user.sysmaint', 'sysmaint'),
              r('boot-mode.active', 'sysmaint'),
              r('boot-mode.appvm-default', 'default'),
            ],
          ],
          ['alone', [], [r('supported-service.apparmor', '1')]],
          // Qubes Windows Tools: defaults for Windows with qrexec, each of four only while unset.
          [
            'tpl',
            [
              ['audio-model', 'ich9'],
              ['no-monitor-layout', ''],
              ['rpc-clipboard', ''],
            ],
            [r('os', 'Windows'), r('qrexec', '1'), r('gui', '1'), r('supported-rpc.qubes.A', '1')],
          ],
          ['alone', [['qrexec', '1']], [r('os', 'Windows'), r('qrexec', '0')]],
          ['work', [], [r('os', 'Windows'), r('qrexec', '1')]],
          [
            'alone',
            [
              ['supported-service.apparmor', '1'],
              ['apparmor', '1'],
            ],
            [r('supported-service.cups', '1')],
          ],
        ],
      },
    );
  }, 120_000);

  it('refuses too many requests only after upstream would, and takes as many as allowed', async () => {
    const nonAscii: [string, Buffer] = ['/features-request/zz', Buffer.from([0xc3, 0xa9])];
    const unsafe: [string, Buffer] = ['/features-request/zz', Buffer.from('$')];
    for (const entries of [
      bulk(MAX_REQUESTED_FEATURES),
      bulk(MAX_REQUESTED_FEATURES + 1),
      bulk(MAX_REQUESTED_FEATURES, [nonAscii]),
      bulk(MAX_REQUESTED_FEATURES, [unsafe]),
    ])
      for (const caller of ['tpl', 'work'] as const) await check(caller, [], entries);
  }, 60_000);
});

describe('qubes.NotifyTools with hostile /qubes-tools/ keys', () => {
  const toolsName = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...TOOLS_KEYS) },
    { weight: 1, arbitrary: fc.constantFrom('supported-rpc.x', 'vmexec', 'os-version', 'qrexec.x') },
    { weight: 1, arbitrary: hostileName },
  );
  const check = async (
    caller: Caller,
    initial: [string, string][],
    entries: [string, Buffer][],
  ): Promise<void> => {
    setFeatures(caller, initial);
    fill(caller, '/qubes-tools/', entries);
    const expected = upstreamNotifyTools(caller, featuresOf(caller), new Map(entries));
    await expectOutcome('qubes.NotifyTools', caller, expected, `${caller} ${describeEntries(entries)}`);
  };
  const t = (name: string, value: string | Buffer): [string, Buffer] => [
    `/qubes-tools/${name}`,
    printable(Buffer.from(value)),
  ];

  it("answers with upstream's bytes and sets what upstream's extensions set, for any caller", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...CALLER_NAMES),
        initialFeatures,
        entriesUnder('/qubes-tools/', toolsName, 8),
        check,
      ),
      {
        numRuns: 500,
        seed: SEED,
        examples: [
          // Keys are read in upstream's order: its first refusal is the answer.
          ['tpl', [], [t('qrexec', 'x'.repeat(MAX_REQUESTED_VALUE + 1)), t('os', Buffer.from([0xc3]))]],
          ['tpl', [], [t('qrexec', '1'.repeat(MAX_REQUESTED_VALUE) + '$')]],
          ['tpl', [], [t('gui', 'x'.repeat(MAX_REQUESTED_VALUE + 1)), t('os', 'Win-dows')]],
          ['alone', [['timezone', 'UTC']], [t('os', 'Windows'), t('qrexec', '1'), t('gui', '1')]],
        ],
      },
    );
  }, 120_000);
});

describe('qubes.NotifyUpdates with hostile payloads', () => {
  const whitespace = fc.constantFrom('', ' ', '\n', '\t', '\r\n', '\v', '\f', '\x1c', '\xa0', '\0');
  const digits = fc.oneof(
    fc.stringMatching(/^[0-9]{1,6}$/),
    fc.constantFrom('0', '00', '1', '007'),
    fc
      .constantFrom(PY_MAX_STR_DIGITS, PY_MAX_STR_DIGITS + 1, 20_000, 60_000)
      .chain((n) => fc.constantFrom('0'.repeat(n), '9'.repeat(n), `${'0'.repeat(n - 1)}1`)),
  );
  const payload: fc.Arbitrary<Buffer> = fc
    .oneof(
      {
        weight: 4,
        arbitrary: fc
          .tuple(whitespace, digits, whitespace)
          .map(([a, b, c]) => Buffer.from(a + b + c, 'latin1')),
      },
      {
        weight: 1,
        arbitrary: fc
          .constantFrom('', 'x', '-1', '+1', '1 2', '1.0', '0x1', '1_000', '١', '²', '1\0', '%d', ' \n')
          .map((s) => Buffer.from(s)),
      },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)) },
    )
    .map(printable);
  const stored = fc.uniqueArray(
    fc.tuple(
      fc.constantFrom('updates-available', 'last-update', 'last-updates-check'),
      fc.constantFrom('', '1', '0', 'False', 'x'),
    ),
    { maxLength: 3, selector: ([name]) => name },
  );

  it("answers with upstream's bytes and dates the qube upstream dates", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...CALLER_NAMES),
        payload,
        fc.boolean(),
        stored,
        stored,
        async (caller, body, tplRunning, tplFeatures, aloneFeatures) => {
          for (const name of CALLER_NAMES) setFeatures(name, []);
          setFeatures('tpl', tplFeatures);
          setFeatures('alone', aloneFeatures);
          vm('tpl').powerState = tplRunning ? 'Running' : 'Halted';
          const expected = upstreamNotifyUpdates(
            caller,
            body,
            tplRunning,
            featuresOf('tpl'),
            featuresOf('alone'),
          );
          const what = `${caller} ${shown(body)}`;
          const reply = await callMisc('qubes.NotifyUpdates', caller, body);
          expect(reply.toString('latin1'), what).toBe(wire(expected.reply));
          expect(featuresOf('tpl'), what).toEqual(expected.tpl);
          expect(featuresOf('alone'), what).toEqual(expected.alone);
          expect(featuresOf('work'), what).toEqual(new Map());
          expect(featuresOf('disp'), what).toEqual(new Map());
        },
      ),
      {
        numRuns: 500,
        seed: SEED,
        examples: [
          ['tpl', printable(Buffer.from('1'.repeat(PY_MAX_STR_DIGITS + 1))), false, [], []],
          ['work', printable(Buffer.from(` ${'0'.repeat(PY_MAX_STR_DIGITS)}1\n`)), false, [], []],
        ],
      },
    );
    vm('tpl').powerState = 'Halted';
  }, 120_000);
});
