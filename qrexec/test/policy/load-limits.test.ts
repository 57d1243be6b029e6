import { execFileSync } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decide,
  decideLegacy,
  loadPolicy,
  POLICY_LIMITS,
  PolicyStore,
  type LoadResult,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { T } from './fixtures.js';
import { TempTree } from './tmp.js';

let tree: TempTree;
let store: PolicyStore | undefined;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(() => {
  store?.close();
  store = undefined;
  tree.remove();
});

const ALLOW = '* * test-vm1 test-vm2 allow\n';
const load = (): LoadResult => loadPolicy({ dirs: [tree.path('etc')], legacyDir: tree.path('legacy') });
const summary = (state: LoadResult): string =>
  summaryLine(decide(state, { source: 'test-vm1', target: 'test-vm2', call: 'svc' }, T));

/** Writes etc/30-main.policy (an allow after `head`) and returns the load's error message, checking that it denies. */
function refusal(head: string): string {
  tree.write('etc/30-main.policy', head + ALLOW);
  const state = load();
  expect(state.policy).toBeNull();
  expect(summary(state)).toBe(`deny ${state.error?.message ?? ''}`);
  return state.error?.message ?? '';
}

/** A chain of `n` files chain/0 … chain/n-1 each including the next in `syntax`, the last one empty. */
function chain(n: number, line: (next: string) => string): void {
  for (let i = 0; i < n; i++) tree.write(`etc/chain/${i}`, i === n - 1 ? '' : line(`chain/${i + 1}`));
}

describe('policy load limits', () => {
  it('the same tree without the fault allows (so each refusal below is the fault)', () => {
    tree.write('etc/30-main.policy', `!include chain/0\n${ALLOW}`);
    chain(POLICY_LIMITS.maxIncludeDepth - 1, (next) => `!include ${next}\n`);
    expect(summary(load())).toBe('allow target=test-vm2');
  });

  it('!include nested past the depth limit (a chain of 2,000: the old loader overflowed the stack at about 1,500) is refused at the line that goes too deep', () => {
    chain(2000, (next) => `# c\n!include ${next}\n`);
    expect(refusal('!include chain/0\n')).toBe(
      `${tree.path('etc/chain/30')}:2: includes nested over 32 deep at ${tree.path('etc/chain/31')}`,
    );
  });

  it('!include-service chains and old-syntax !include chains count the same depth', () => {
    chain(100, (next) => `$include:${next}\n`);
    expect(refusal('!include-service svc * chain/0\n')).toBe(
      `${tree.path('etc/chain/30')}:1: includes nested over 32 deep at ${tree.path('etc/chain/31')}`,
    );
  });

  it('!include-dir chains count too', () => {
    for (let i = 0; i < 100; i++) tree.write(`etc/d${i}/x.policy`, `!include-dir d${i + 1}\n`);
    tree.write('etc/d100/x.policy', '');
    expect(refusal('!include-dir d0\n')).toBe(
      `${tree.path('etc/d30/x.policy')}:1: includes nested over 32 deep at ${tree.path('etc/d31/x.policy')}`,
    );
  });

  it('an include loop through !include-service names the loop', () => {
    tree.write('etc/a', '!include b\n');
    tree.write('etc/b', '$include:a\n');
    expect(refusal('!include-service svc * a\n')).toBe(
      `${tree.path('etc/b')}:1: include loop: ${tree.path('etc/a')}`,
    );
  });

  it('a tree that includes each file twice stops at the file-count budget instead of taking 2^depth', () => {
    for (let i = 0; i < 30; i++) tree.write(`etc/f${i}`, `!include f${i + 1}\n!include f${i + 1}\n`);
    tree.write('etc/f30', '');
    expect(refusal('!include f0\n')).toMatch(
      new RegExp(`^${tree.path('etc/f')}\\d+:[12]: over 10000 files loaded at ${tree.path('etc/f')}\\d+$`),
    );
  });

  it('a file over 1 MiB is refused; one of exactly 1 MiB loads', () => {
    const exact = '#'.repeat(POLICY_LIMITS.maxFileBytes - 1) + '\n';
    tree.write('etc/big', exact);
    tree.write('etc/30-main.policy', `!include big\n${ALLOW}`);
    expect(summary(load())).toBe('allow target=test-vm2');
    tree.write('etc/big', exact + '\n');
    expect(refusal('!include big\n')).toBe(
      `${tree.path('etc/30-main.policy')}:1: file too large: ${tree.path('etc/big')} (over 1048576 bytes)`,
    );
  });

  it('a top-level file over 1 MiB is refused at its own name', () => {
    tree.write('etc/20-big.policy', '#'.repeat(POLICY_LIMITS.maxFileBytes + 1));
    expect(refusal('')).toBe(
      `${tree.path('etc/20-big.policy')}:-: file too large: ${tree.path('etc/20-big.policy')} (over 1048576 bytes)`,
    );
  });

  it('a load over 16 MiB in all is refused', () => {
    tree.write('etc/mib', '#'.repeat(POLICY_LIMITS.maxFileBytes - 1) + '\n');
    expect(refusal('!include mib\n'.repeat(17))).toBe(
      `${tree.path('etc/30-main.policy')}:16: policy over 16777216 bytes in all at ${tree.path('etc/mib')}`,
    );
  });

  it('bytes that are not UTF-8 are refused, not read with replacement characters', () => {
    writeFileSync(tree.write('etc/bad', ''), Buffer.from([0x23, 0xff, 0x0a]));
    expect(refusal('!include bad\n')).toBe(
      `${tree.path('etc/30-main.policy')}:1: not valid UTF-8: ${tree.path('etc/bad')}`,
    );
  });

  it('missing includes, directories, FIFOs and symlink loops (not files, as Path.is_file says upstream) are refused with the line that named them', () => {
    const main = tree.path('etc/30-main.policy');
    expect(refusal('!include nope\n')).toBe(`${main}:1: not a file: ${tree.path('etc/nope')}`);
    tree.mkdir('etc/dir');
    expect(refusal('!include dir\n')).toBe(`${main}:1: not a file: ${tree.path('etc/dir')}`);
    expect(refusal('!include-dir 30-main.policy\n')).toBe(`${main}:1: not a directory: ${main}`);
    execFileSync('mkfifo', [tree.path('etc/fifo')]);
    expect(refusal('!include-service svc * fifo\n')).toBe(`${main}:1: not a file: ${tree.path('etc/fifo')}`);
    symlinkSync('loop', tree.path('etc/loop'));
    expect(refusal('!include loop\n')).toBe(`${main}:1: not a file: ${tree.path('etc/loop')}`);
  });

  it('an unreadable file is refused (needs a user the kernel checks permissions for)', ({ skip }) => {
    if (process.getuid?.() === 0) skip('running as root: mode 000 does not stop reads');
    tree.write('etc/secret', ALLOW);
    execFileSync('chmod', ['000', tree.path('etc/secret')]);
    expect(refusal('!include secret\n')).toBe(
      `${tree.path('etc/30-main.policy')}:1: cannot read ${tree.path('etc/secret')}: EACCES`,
    );
  });

  it('the R4.0 engine has the same depth limit', () => {
    for (let i = 0; i < 100; i++) tree.write(`legacy/c${i}`, `$include:c${i + 1}\n`);
    const outcome = decideLegacy(
      tree.path('legacy'),
      { source: 'test-vm1', target: 'test-vm2', call: 'c0' },
      T,
    );
    expect(summaryLine(outcome)).toBe(
      `deny ${tree.path('legacy/c31')}:1: includes nested over 32 deep at ${tree.path('legacy/c32')}`,
    );
  });

  it('a watched tree that becomes too deep denies every call and recovers when fixed; the store keeps running', async () => {
    tree.write('etc/30-main.policy', `!include chain/0\n${ALLOW}`);
    chain(3, (next) => `!include ${next}\n`);
    const reloads: LoadResult[] = [];
    let reloaded: (() => void) | undefined;
    const watched = new PolicyStore({
      dirs: [tree.path('etc')],
      legacyDir: tree.path('legacy'),
      debounceMs: 20,
      onReload: (r) => {
        reloads.push(r);
        reloaded?.();
      },
    });
    store = watched;
    const decision = (): string =>
      summaryLine(watched.evaluate({ source: 'test-vm1', target: 'test-vm2', call: 'svc' }, T));
    expect(decision()).toBe('allow target=test-vm2');
    const errorReload = new Promise<void>((resolve) => {
      reloaded = () => {
        if (reloads.at(-1)?.error) resolve();
      };
    });
    chain(100, (next) => `!include ${next}\n`);
    await errorReload;
    expect(decision()).toMatch(/^deny .*: includes nested over 32 deep at /);
    const okReload = new Promise<void>((resolve) => {
      reloaded = () => {
        if (reloads.at(-1)?.policy) resolve();
      };
    });
    tree.write('etc/chain/3', '');
    await okReload;
    expect(decision()).toBe('allow target=test-vm2');
  });
});
