import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import fc from 'fast-check';
import { XMLParser } from 'fast-xml-parser';
import { afterEach, describe, expect, it } from 'vitest';

import { QubesValueError } from '../../src/model/errors.js';
import type { Properties } from '../../src/model/property.js';
import type { TestDaemon } from '../support/harness.js';
import { startDaemon } from '../support/harness.js';

/**
 * Every value the API accepts comes back byte for byte after a restart, and
 * every file written is XML a strict parser reads the same way we do. What
 * XML 1.0 cannot carry is refused, and a refusal leaves qubes.xml untouched.
 */

const xmllint = spawnSync('xmllint', ['--version']);
const hasXmllint = xmllint.status === 0;
if (!hasXmllint) console.log('xmllint (libxml2-utils) not found: the strict-parser checks are skipped');

/** XML 1.0's Char production, for the code units a string may hold. */
function xmlCarries(s: string): boolean {
  return !/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(
    s,
  );
}

const TRICKY = [
  '\n',
  '\r',
  '\r\n',
  '\t',
  ' ',
  '  ',
  '\x0b',
  '\x0c',
  '\x00',
  '\x1f',
  '\x7f',
  '<',
  '>',
  '&',
  '"',
  "'",
  ']]>',
  '&#13;',
  '&amp;',
  '&nbsp;',
  '<!--',
];
const asciiChar = fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c));
const asciiValue = fc
  .array(fc.oneof(fc.constantFrom(...TRICKY), asciiChar), { maxLength: 10 })
  .map((parts) => parts.join(''));
const noteValue = fc
  .array(fc.oneof(fc.constantFrom(...TRICKY), fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 8 })
  .map((parts) => parts.join(''));

type Store = Properties;
const storeOf = (h: { props: Properties }): Store => h.props;

/** The str-typed properties the API lets dom0 set, on an AppVM and on the app. */
function settableStrings(t: TestDaemon): { vm: string[]; global: string[] } {
  const names = (s: Store) => s.defs.filter((d) => d.type === 'str' && !d.readOnly).map((d) => d.name);
  const vm = t.daemon.app.domains.byName('work');
  if (!vm) throw new Error('no work qube');
  return { vm: names(storeOf(vm)), global: names(storeOf(t.daemon.app)) };
}

interface Inputs {
  readonly vmProps: readonly string[];
  readonly globalProps: readonly string[];
  readonly features: readonly string[];
  readonly comments: readonly string[];
  readonly poolPaths: readonly string[];
  readonly notes: string;
  readonly tags: readonly string[];
}

const isOk = (reply: Buffer) => reply[0] === 0x30;
const excType = (reply: Buffer) => reply.toString('latin1').split('\0')[1] ?? '';

/** Every value the inputs could have changed, as the API reports it. */
async function view(
  t: TestDaemon,
  names: { vm: string[]; global: string[] },
  pools: string[],
): Promise<string[]> {
  const out: string[] = [];
  for (const p of names.vm) out.push(await t.ok('admin.vm.property.Get', 'work', p));
  for (const p of names.global) out.push(await t.ok('admin.property.Get', 'dom0', p));
  const features = (await t.ok('admin.vm.feature.List', 'work')).split('\n').filter(Boolean);
  for (const f of features) out.push(`${f}=${await t.ok('admin.vm.feature.Get', 'work', f)}`);
  out.push(await t.ok('admin.vm.tag.List', 'work'));
  out.push(await t.ok('admin.vm.firewall.Get', 'work'));
  out.push(await t.ok('admin.vm.notes.Get', 'work'));
  // The host disk's size and usage change on their own; the rest is the pool's configuration.
  const config = (info: string) =>
    info
      .split('\n')
      .filter((l) => !/^(size|usage)=/.test(l))
      .join('\n');
  for (const p of pools) out.push(config(await t.ok('admin.pool.Info', 'dom0', p)));
  return out;
}

const xmlParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
  htmlEntities: true,
});

/**
 * Checks a file with libxml2: it must be well-formed, and its canonical form
 * (where libxml2's normalisation of attribute whitespace and line ends shows
 * as character references) must read, in our parser, as the file itself does.
 */
function checkStrict(path: string): void {
  if (!hasXmllint || !existsSync(path)) return;
  const lint = spawnSync('xmllint', ['--noout', path], { encoding: 'utf8' });
  expect(lint.stderr, `${path} is not well-formed`).toBe('');
  expect(lint.status).toBe(0);
  const c14n = spawnSync('xmllint', ['--c14n', path], { encoding: 'utf8' });
  expect(c14n.status).toBe(0);
  const ours = xmlParser.parse(readFileSync(path, 'utf8')) as unknown[];
  const theirs = xmlParser.parse(c14n.stdout) as unknown[];
  // Our view of the file, minus its XML declaration, which c14n drops.
  expect(theirs).toEqual(ours.filter((n) => !Object.keys(n as object).some((k) => k.startsWith('?'))));
}

const dirs: string[] = [];
let d: TestDaemon | null = null;
const hostZone = process.env.TZ;
afterEach(async () => {
  await d?.stop();
  d = null;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  if (hostZone === undefined) delete process.env.TZ;
  else process.env.TZ = hostZone;
});

/** dom0's time zone, which bounds a firewall rule's expire (the daemon runs in this process). */
function zone(name: string): void {
  process.env.TZ = name;
}

async function freshDaemon(): Promise<TestDaemon> {
  const stateDir = await mkdtemp(join(tmpdir(), 'odyssey-exact-'));
  dirs.push(stateDir);
  const t = await startDaemon({ stateDir });
  await t.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=red');
  return t;
}

/**
 * Makes one call and returns null when it succeeded, else the exception's
 * type; a refusal must leave qubes.xml as it was (both read after a checkpoint,
 * which writes what the journal holds).
 */
async function attempt(t: TestDaemon, value: string, call: () => Promise<Buffer>): Promise<string | null> {
  const xmlPath = join(t.stateDir, 'qubes.xml');
  await t.daemon.store.flush();
  const before = await readFile(xmlPath);
  const reply = await call();
  if (isOk(reply)) return null;
  expect(reply[0], `reply to ${JSON.stringify(value)}`).toBe(0x32);
  await t.daemon.store.flush();
  expect(await readFile(xmlPath)).toEqual(before);
  return excType(reply);
}

/**
 * Upstream's answer to a property value it cannot store: QubesValueError, or
 * its subclass QubesPropertyValueError where the property refuses the Set for
 * a reason of its own first (a write-once uuid).
 */
function expectRefusedIfUnstorable(name: string, value: string, refusal: string | null): void {
  if (!xmlCarries(value))
    expect(['QubesValueError', 'QubesPropertyValueError'], `${name}=${JSON.stringify(value)}`).toContain(
      refusal,
    );
}

async function apply(
  t: TestDaemon,
  names: { vm: string[]; global: string[] },
  inputs: Inputs,
): Promise<string[]> {
  const pools: string[] = [];
  for (const [i, p] of names.vm.entries()) {
    const v = inputs.vmProps[i % inputs.vmProps.length] ?? '';
    const refusal = await attempt(t, v, () => t.call('admin.vm.property.Set', 'work', p, v));
    expectRefusedIfUnstorable(p, v, refusal);
    if (refusal === null)
      expect(await t.ok('admin.vm.property.Get', 'work', p)).toBe(`default=False type=str ${v}`);
  }
  for (const [i, p] of names.global.entries()) {
    const v = inputs.globalProps[i % inputs.globalProps.length] ?? '';
    expectRefusedIfUnstorable(p, v, await attempt(t, v, () => t.call('admin.property.Set', 'dom0', p, v)));
  }
  for (const [i, v] of inputs.features.entries()) {
    const refusal = await attempt(t, v, () => t.call('admin.vm.feature.Set', 'work', `f${i}`, v));
    if (refusal === null) expect(await t.ok('admin.vm.feature.Get', 'work', `f${i}`)).toBe(v);
  }
  for (const tag of inputs.tags) await attempt(t, tag, () => t.call('admin.vm.tag.Set', 'work', tag));
  const rules = inputs.comments.map((c) => `action=accept proto=tcp dstports=22 comment=${c}\n`).join('');
  if ((await attempt(t, rules, () => t.call('admin.vm.firewall.Set', 'work', '', rules))) === null) {
    // Get spells the port as a range and, like upstream, keeps no empty comment.
    const expected = rules.replaceAll('dstports=22', 'dstports=22-22').replaceAll(' comment=\n', '\n');
    expect(await t.ok('admin.vm.firewall.Get', 'work')).toBe(expected);
  }
  for (const [i, sub] of inputs.poolPaths.entries()) {
    const payload = `name=p${i}\ndir_path=${join(t.stateDir, 'pools', sub.replaceAll('/', '_'))}\n`;
    const refusal = await attempt(t, payload, () => t.call('admin.pool.Add', 'dom0', 'file', payload));
    if (refusal === null) pools.push(`p${i}`);
  }
  // An empty payload is refused as a protocol error, as upstream refuses it.
  if (inputs.notes !== '') await t.ok('admin.vm.notes.Set', 'work', '', Buffer.from(inputs.notes, 'utf8'));
  return pools;
}

describe('exact persistence', () => {
  it('round-trips every accepted string through qubes.xml, firewall.xml and notes across a restart', async () => {
    const probe = await freshDaemon();
    const names = settableStrings(probe);
    await probe.stop();
    expect(names.vm).toContain('kernelopts');
    const inputs = fc.record({
      vmProps: fc.array(asciiValue, { minLength: 1, maxLength: names.vm.length }),
      globalProps: fc.array(asciiValue, { minLength: 1, maxLength: 3 }),
      features: fc.array(asciiValue, { maxLength: 4 }),
      // A line boundary of Python's splitlines() ends a rule where upstream ends it (a trailing CR
      // before the newline is one boundary with it), so a comment cannot carry one.
      comments: fc.array(
        asciiValue.filter((c) => !/[\r\x0b\x0c\x1c-\x1e]/.test(c)),
        { maxLength: 3 },
      ),
      poolPaths: fc.array(asciiValue, { maxLength: 2 }),
      notes: noteValue,
      tags: fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { maxLength: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(inputs, async (input) => {
        const t = await freshDaemon();
        d = t;
        const pools = await apply(t, names, input);
        const before = await view(t, names, pools);
        // A backup's qubes.xml is the same writer's document with the backup's features added;
        // with the live features it is qubes.xml byte for byte, so what holds here holds there.
        const backupView = t.daemon.store.writer.serializeWithFeatures((vm) => vm.features.entries());
        await t.daemon.store.flush();
        expect(backupView).toBe(await readFile(join(t.stateDir, 'qubes.xml'), 'utf8'));
        await t.daemon.stop();
        d = null;
        checkStrict(join(t.stateDir, 'qubes.xml'));
        checkStrict(join(t.stateDir, 'appvms', 'work', 'firewall.xml'));
        const again = await startDaemon({ stateDir: t.stateDir });
        d = again;
        expect(await view(again, names, pools)).toEqual(before);
        await again.stop();
        d = null;
      }),
      {
        numRuns: 30,
        // The cases the review found, so that every run covers them.
        examples: [
          [
            {
              vmProps: ['line one\n  line two\n', 'a\x0bb', 'cr\r\nlf\r', '\ttab\t'],
              globalProps: ['\x0c'],
              features: [' padded '],
              comments: [' spaced comment '],
              poolPaths: ['tab\there', 'ctl\x01'],
              notes: 'n\r\n\u0001\ud800',
              tags: ['t'],
            },
          ],
        ],
      },
    );
  }, 180_000);

  it('refuses a firewall rule expiring after year 9999 and keeps the rules it had', async () => {
    zone('UTC');
    const t = await freshDaemon();
    d = t;
    await t.ok('admin.vm.firewall.Set', 'work', '', 'action=drop expire=253402300799\n');
    const file = join(t.stateDir, 'appvms', 'work', 'firewall.xml');
    const before = await readFile(file);
    for (const expire of ['253402300800', '1'.padEnd(40, '0')]) {
      const reply = await t.call('admin.vm.firewall.Set', 'work', '', `action=accept expire=${expire}\n`);
      expect(reply.toString('latin1')).toBe('2\0QubesValueError\0\0expiration time out of range\0');
    }
    expect(await readFile(file)).toEqual(before);
    expect(await t.ok('admin.vm.firewall.Get', 'work')).toBe('action=drop expire=253402300799\n');
  });

  it("bounds expire by the end of year 9999 in dom0's time zone, as upstream", async () => {
    // Five hours west of UTC upstream's datetime holds five hours more; the reply and file agree.
    zone('America/New_York');
    const t = await freshDaemon();
    d = t;
    await t.ok('admin.vm.firewall.Set', 'work', '', 'action=drop expire=253402318799\n');
    expect(await t.ok('admin.vm.firewall.Get', 'work')).toBe('action=drop expire=253402318799\n');
    const file = join(t.stateDir, 'appvms', 'work', 'firewall.xml');
    expect(await readFile(file, 'utf8')).toContain('<property name="expire">253402318799</property>');
    const reply = await t.call('admin.vm.firewall.Set', 'work', '', 'action=accept expire=253402318800\n');
    expect(reply.toString('latin1')).toBe('2\0QubesValueError\0\0expiration time out of range\0');
    // Nine hours east, the last UTC second of 9999 is already past upstream's bound.
    zone('Asia/Tokyo');
    const east = await t.call('admin.vm.firewall.Set', 'work', '', 'action=accept expire=253402300799\n');
    expect(east.toString('latin1')).toBe('2\0QubesValueError\0\0expiration time out of range\0');
    await t.ok('admin.vm.firewall.Set', 'work', '', 'action=accept expire=253402268399\n');
  });

  it('refuses in the model what the ASCII-only API cannot even deliver, and saves nothing', async () => {
    const t = await freshDaemon();
    d = t;
    const vm = t.daemon.app.domains.byName('work');
    if (!vm) throw new Error('no work qube');
    for (const bad of ['a\ud800', '\udc00', '\ufffe', '\uffff', '\x0b']) {
      expect(() => vm.props.set('kernelopts', bad)).toThrow(QubesValueError);
      expect(() => vm.features.set('f', bad)).toThrow(QubesValueError);
    }
    expect(vm.props.explicit().has('kernelopts')).toBe(false);
    expect(vm.features.get('f')).toBeUndefined();
  });
});
