import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decide,
  loadPolicy,
  parseRuleLine,
  parseServiceRuleLine,
  Policy,
  POLICY_LIMITS,
  validateServiceAndArgument,
  type LoadResult,
  type PolicyLocation,
  type Rule,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { T } from './fixtures.js';
import { TempTree } from './tmp.js';

/*
 * Random policy trees, then random damage: bytes changed anywhere (invalid
 * UTF-8, NUL, CR, `!`, `$`, `,` …), include loops, missing files, chains past
 * the depth limit, files past the size limit. The loader must never throw,
 * and it must decide every call exactly as a naive reference reading of the
 * same files does: when the reference finds any fault, every call is denied;
 * otherwise the same first line (decision, target and reason). So a damaged
 * tree can never allow what a clean parse of it would not, and a partial load
 * (a skipped file, a dropped deny) would show up as a difference.
 */

const tree = new TempTree();
afterAll(() => tree.remove());

// ---------------------------------------------------------------- reference

class ReferenceFault extends Error {}

const lines = (text: string): string[] => text.split(/\r\n|\r|\n/);
const fields = (line: string): string[] => (line.trim() === '' ? [] : line.trim().split(/\s+/));
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The straightforward recursive reading of a tree the loader must agree with; throws ReferenceFault for any fault. */
function referenceRules(etc: string): Rule[] {
  const rules: Rule[] = [];
  const stack: string[] = [];
  const read = (file: string): string => {
    let st;
    try {
      st = statSync(file);
    } catch {
      throw new ReferenceFault(`missing ${file}`);
    }
    if (!st.isFile()) throw new ReferenceFault(`not a file ${file}`);
    const bytes = readFileSync(file);
    if (bytes.length > POLICY_LIMITS.maxFileBytes) throw new ReferenceFault(`too large ${file}`);
    try {
      return utf8.decode(bytes);
    } catch {
      throw new ReferenceFault(`not utf-8 ${file}`);
    }
  };
  const enter = (file: string, body: (text: string) => void): void => {
    if (stack.includes(file)) throw new ReferenceFault(`loop ${file}`);
    if (stack.length >= POLICY_LIMITS.maxIncludeDepth) throw new ReferenceFault(`too deep ${file}`);
    const text = read(file);
    stack.push(file);
    body(text);
    stack.pop();
  };
  const rule = (parse: () => Rule): void => {
    try {
      rules.push(parse());
    } catch (err) {
      throw new ReferenceFault((err as Error).message);
    }
  };
  const oldFile = (service: string, argument: string, file: string): void =>
    enter(file, (text) =>
      lines(text).forEach((raw, i) => {
        const where: PolicyLocation = { file, line: i + 1 };
        let line = raw.trim();
        if (line === '' || line.startsWith('#')) return;
        line = line.replaceAll('$include:', '!include ').replaceAll('$', '@').replaceAll(',', ' ');
        const f = fields(line);
        if (f[0] === '!include' && f.length === 2) oldFile(service, argument, path.resolve(etc, f[1] ?? ''));
        else if (line.startsWith('!')) throw new ReferenceFault('directive in old syntax');
        else rule(() => parseServiceRuleLine(service, argument, line, where));
      }),
    );
  const newFile = (file: string): void =>
    enter(file, (text) =>
      lines(text).forEach((raw, i) => {
        const where: PolicyLocation = { file, line: i + 1 };
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) return;
        const f = fields(line);
        if (f[0] === '!include' && f.length === 2) newFile(path.resolve(etc, f[1] ?? ''));
        else if (f[0] === '!include-service' && f.length === 4) {
          const [, service = '', argument = '', target = ''] = f;
          let checked;
          try {
            checked = validateServiceAndArgument(service, argument, where);
          } catch (err) {
            throw new ReferenceFault((err as Error).message);
          }
          oldFile(checked.service ?? '*', checked.argument ?? '*', path.resolve(etc, target));
        } else if (f[0] === '!include-dir' && f.length === 2) {
          const dir = path.resolve(etc, f[1] ?? '');
          let names: string[];
          try {
            names = readdirSync(dir);
          } catch {
            throw new ReferenceFault(`not a directory ${dir}`);
          }
          const policies = names.filter(
            (n) => n.endsWith('.policy') && !n.startsWith('.') && statSync(path.join(dir, n)).isFile(),
          );
          if (policies.some((n) => !/^[0-9a-z_.-]+$/.test(n))) throw new ReferenceFault('invalid filename');
          for (const n of policies.sort()) newFile(path.join(dir, n));
        } else if (f[0] === '!compat-4.0' && f.length === 1) {
          // The legacy directory of these trees does not exist: nothing to add.
        } else if (line.startsWith('!')) throw new ReferenceFault(`directive ${f[0] ?? ''}`);
        else rule(() => parseRuleLine(line, where));
      }),
    );
  const top = readdirSync(etc)
    .filter((name) => name.endsWith('.policy') && statSync(path.join(etc, name)).isFile())
    .sort();
  for (const name of top) newFile(path.join(etc, name));
  return rules;
}

// ---------------------------------------------------------------- trees

interface TreeFile {
  readonly rel: string;
  readonly old: boolean;
  content: Buffer;
}

const services = ['svc', 'other', '*'] as const;
const sources = ['test-vm1', 'test-vm2', '@anyvm', '@tag:tag1', '*'] as const;
const targets = ['test-vm1', 'test-vm2', '@anyvm', '@default', '@dispvm', '@tag:tag2'] as const;
const actions = ['deny', 'allow', 'allow target=test-vm2', 'ask', 'ask default_target=test-vm2'] as const;

const newRule = fc
  .tuple(
    fc.constantFrom(...services),
    fc.constantFrom('*', '+a', '+'),
    fc.constantFrom(...sources),
    fc.constantFrom(...targets),
    fc.constantFrom(...actions),
  )
  .map(([service, argument, source, target, action]) => {
    const arg = service === '*' ? '*' : argument;
    const act = target === '@default' && action === 'allow' ? 'allow target=test-vm2' : action;
    return `${service} ${arg} ${source} ${target} ${act}`;
  });

const oldRule = fc
  .tuple(
    fc.constantFrom('$anyvm', 'test-vm1', '@tag:tag1', 'test-vm2'),
    fc.constantFrom('$anyvm', 'test-vm2', '@default', 'test-vm1'),
    fc.constantFrom('allow', 'deny', 'ask', 'allow,target=test-vm2'),
  )
  .map(([source, target, action]) => {
    const act = target === '@default' && action === 'allow' ? 'allow,target=test-vm2' : action;
    return `${source} ${target} ${act}`;
  });

/** A line slot: a rule, a comment, or an include of a later file (indices keep the tree acyclic). */
const slot = fc.oneof(
  { weight: 5, arbitrary: fc.constant<{ kind: 'rule' }>({ kind: 'rule' }) },
  { weight: 1, arbitrary: fc.constant<{ kind: 'comment' }>({ kind: 'comment' }) },
  { weight: 2, arbitrary: fc.nat(20).map((n) => ({ kind: 'include' as const, n })) },
);

const treeShape = fc.record({
  top: fc.integer({ min: 1, max: 3 }),
  inc: fc.integer({ min: 0, max: 3 }),
  old: fc.integer({ min: 0, max: 3 }),
  dir: fc.integer({ min: 0, max: 2 }),
  slots: fc.array(fc.array(slot, { maxLength: 6 }), { minLength: 11, maxLength: 11 }),
  news: fc.array(newRule, { minLength: 60, maxLength: 60 }),
  olds: fc.array(oldRule, { minLength: 60, maxLength: 60 }),
});

type Shape = typeof treeShape extends fc.Arbitrary<infer S> ? S : never;

function buildTree({ top, inc, old, dir, slots, news, olds }: Shape): TreeFile[] {
  const files: TreeFile[] = [
    ...Array.from({ length: top }, (_, i) => ({ rel: `${10 + i}-p.policy`, old: false })),
    ...Array.from({ length: inc }, (_, i) => ({ rel: `inc/i${i}`, old: false })),
    ...Array.from({ length: old }, (_, i) => ({ rel: `old/o${i}`, old: true })),
    ...Array.from({ length: dir }, (_, i) => ({ rel: `dir/d${i}.policy`, old: false })),
  ].map((f) => ({ ...f, content: Buffer.alloc(0) }));
  let ruleIndex = 0;
  files.forEach((file, i) => {
    const text = (slots[i] ?? []).map((s) => {
      if (s.kind === 'comment') return '# note';
      const later = files.slice(Math.max(i + 1, top)).filter((f) => !file.old || f.old);
      const target = later.length > 0 && s.kind === 'include' ? later[s.n % later.length] : undefined;
      if (!target) return file.old ? (olds[ruleIndex++ % 60] ?? '') : (news[ruleIndex++ % 60] ?? '');
      if (file.old) return `$include:${target.rel}`;
      if (target.old) return `!include-service svc * ${target.rel}`;
      // A top-level file takes the directory whole; the directory's files include each other by name.
      return target.rel.startsWith('dir/') && i < top ? '!include-dir dir' : `!include ${target.rel}`;
    });
    file.content = Buffer.from(text.join('\n') + '\n');
  });
  return files;
}

// ---------------------------------------------------------------- damage

const BYTES = [
  0x00, 0x09, 0x0a, 0x0d, 0x20, 0x21, 0x23, 0x24, 0x2a, 0x2b, 0x2c, 0x3d, 0x40, 0x61, 0x31, 0x32, 0x69,
];
const damage = fc.oneof(
  fc.record({
    kind: fc.constant('bytes' as const),
    file: fc.nat(),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    remove: fc.nat(4),
    insert: fc.array(fc.oneof(fc.constantFrom(...BYTES), fc.constantFrom(0xc3, 0xff, 0xe2, 0x80, 0xa8)), {
      maxLength: 4,
    }),
  }),
  fc.record({
    kind: fc.constantFrom('loop' as const, 'missing' as const, 'deep' as const, 'huge' as const),
    file: fc.nat(),
  }),
);

type Damage = typeof damage extends fc.Arbitrary<infer D> ? D : never;

function apply(files: TreeFile[], d: Damage): void {
  const file = files[d.file % files.length];
  if (!file) return;
  const append = (line: string): void => {
    file.content = Buffer.concat([file.content, Buffer.from(`${line}\n`)]);
  };
  switch (d.kind) {
    case 'bytes': {
      const at = Math.floor(d.at * file.content.length);
      file.content = Buffer.concat([
        file.content.subarray(0, at),
        Buffer.from(d.insert),
        file.content.subarray(at + d.remove),
      ]);
      return;
    }
    case 'loop':
      append(file.old ? `$include:${file.rel}` : `!include ${file.rel}`);
      return;
    case 'missing':
      files.splice(files.indexOf(file), 1);
      return;
    case 'deep': {
      const include = (rel: string): string => (file.old ? `$include:${rel}` : `!include ${rel}`);
      const depth = POLICY_LIMITS.maxIncludeDepth + 3;
      for (let i = 0; i <= depth; i++) {
        const content = i === depth ? '' : `${include(`chain/c${i + 1}`)}\n`;
        files.push({ rel: `chain/c${i}`, old: file.old, content: Buffer.from(content) });
      }
      append(include('chain/c0'));
      return;
    }
    case 'huge':
      append(`#${'x'.repeat(POLICY_LIMITS.maxFileBytes)}`);
      return;
  }
}

// ---------------------------------------------------------------- runs

let run = 0;
function write(files: TreeFile[]): string {
  const etc = tree.mkdir(`run${run++}/etc`);
  for (const f of files) {
    const file = path.join(etc, f.rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, f.content);
  }
  return etc;
}

const CALLS = ['svc', 'svc+a', 'other', 'other+b'];
const SOURCES = ['test-vm1', 'test-vm2', 'test-vm3'];
const TARGETS = ['test-vm1', 'test-vm2', '', '@dispvm', 'dom0'];

function decisions(state: LoadResult | Policy): string[] {
  return CALLS.flatMap((call) =>
    SOURCES.flatMap((source) =>
      TARGETS.map((target) => summaryLine(decide(state, { source, target, call }, T))),
    ),
  );
}

function check(files: TreeFile[]): { faulty: boolean; allows: number } {
  const etc = write(files);
  const loaded = loadPolicy({ dirs: [etc], legacyDir: path.join(etc, 'no-legacy') });
  let reference: Policy | null = null;
  try {
    reference = new Policy(referenceRules(etc));
  } catch (err) {
    if (!(err instanceof ReferenceFault)) throw err;
  }
  const got = decisions(loaded);
  if (reference === null) {
    expect(loaded.error).not.toBeNull();
    expect(got.every((line) => line.startsWith('deny '))).toBe(true);
  } else {
    expect(loaded.error?.message ?? null).toBeNull();
    expect(got).toEqual(decisions(reference));
  }
  rmSync(path.dirname(etc), { recursive: true, force: true });
  return { faulty: reference === null, allows: got.filter((l) => l.startsWith('allow')).length };
}

describe('hostile policy trees (property)', () => {
  it('an undamaged random tree loads as the reference reads it, and some trees allow', () => {
    let allowing = 0;
    fc.assert(
      fc.property(treeShape, (shape) => {
        const { faulty, allows } = check(buildTree(shape));
        expect(faulty).toBe(false);
        if (allows > 0) allowing++;
      }),
      { numRuns: 100 },
    );
    expect(allowing).toBeGreaterThan(10);
  });

  it('damaged trees never throw, deny everything when faulty, and otherwise decide as the reference', () => {
    let faulty = 0;
    let clean = 0;
    fc.assert(
      fc.property(treeShape, fc.array(damage, { minLength: 1, maxLength: 3 }), (shape, damages) => {
        const files = buildTree(shape);
        for (const d of damages) apply(files, d);
        if (check(files).faulty) faulty++;
        else clean++;
      }),
      { numRuns: 300 },
    );
    // Both outcomes must occur, or the property proved nothing about one of them.
    expect(faulty).toBeGreaterThan(30);
    expect(clean).toBeGreaterThan(30);
  });
});
