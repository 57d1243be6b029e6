import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PolicyStore, type LoadResult } from '../../src/policy/index.js';
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

const call = { source: 'test-vm1', target: 'test-vm2', call: 'test.Service+argument' };
const decision = (s: PolicyStore) => summaryLine(s.evaluate(call, T));

/** Resolves at the next reload, or rejects after `ms`. */
function nextReload(reloads: LoadResult[], ms = 5000): Promise<LoadResult> {
  const seen = reloads.length;
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const r = reloads[seen];
      if (r) {
        clearInterval(poll);
        resolve(r);
      } else if (Date.now() - started > ms) {
        clearInterval(poll);
        reject(new Error('no reload'));
      }
    }, 5);
  });
}

function open(dirs: string[]): { store: PolicyStore; reloads: LoadResult[] } {
  const reloads: LoadResult[] = [];
  store = new PolicyStore({
    dirs,
    legacyDir: tree.path('legacy'),
    debounceMs: 20,
    onReload: (r) => reloads.push(r),
  });
  return { store, reloads };
}

describe('PolicyStore', () => {
  it('reloads when a policy file is added, changed or removed', async () => {
    const etc = tree.mkdir('etc');
    const { store, reloads } = open([etc]);
    expect(decision(store)).toBe('deny no matching rule found');

    let next = nextReload(reloads);
    tree.write('etc/30-user.policy', '* * test-vm1 test-vm2 allow\n');
    await next;
    expect(decision(store)).toBe('allow target=test-vm2');

    next = nextReload(reloads);
    tree.write('etc/30-user.policy', '* * test-vm1 test-vm2 deny notify=no\n');
    await next;
    expect(decision(store)).toBe(`deny denied by policy ${tree.path('etc/30-user.policy')}:1`);

    next = nextReload(reloads);
    rmSync(tree.path('etc/30-user.policy'));
    await next;
    expect(decision(store)).toBe('deny no matching rule found');
  });

  it('watches included files, including ones replaced by rename', async () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/30-main.policy', '!include-service test.Service * include/rules\n');
    tree.write('etc/include/rules', 'test-vm1 test-vm3 allow\n');
    const { store, reloads } = open([etc]);
    expect(decision(store)).toBe('deny no matching rule found');

    const next = nextReload(reloads);
    writeFileSync(tree.path('etc/include/.rules.tmp'), 'test-vm1 test-vm2 allow,user=root\n');
    renameSync(tree.path('etc/include/.rules.tmp'), tree.path('etc/include/rules'));
    await next;
    expect(decision(store)).toBe('allow target=test-vm2');
    expect(store.evaluate(call, T).response?.split('\n')[0]).toBe('user=root');
  });

  it('denies everything while a file is broken, and recovers when it is fixed', async () => {
    const etc = tree.mkdir('etc');
    tree.write('etc/10-base.policy', '* * test-vm1 test-vm2 allow\n');
    const { store, reloads } = open([etc]);
    expect(decision(store)).toBe('allow target=test-vm2');

    let next = nextReload(reloads);
    const broken = tree.write('etc/20-broken.policy', '* * test-vm1 test-vm2 allow bogus\n');
    await next;
    expect(store.error?.message).toBe(`${broken}:1: invalid action parameter syntax: 'bogus'`);
    expect(store.policy).toBeNull();
    expect(decision(store)).toBe(`deny ${broken}:1: invalid action parameter syntax: 'bogus'`);
    expect(store.evaluate(call, T).response).toBe('result=deny');

    next = nextReload(reloads);
    tree.write('etc/20-broken.policy', '# fixed\n');
    await next;
    expect(store.error).toBeNull();
    expect(decision(store)).toBe('allow target=test-vm2');
  });

  it('notices a missing include when it appears', async () => {
    const etc = tree.mkdir('etc');
    tree.mkdir('etc/include');
    tree.write('etc/30-main.policy', '!include include/later\n');
    const { store, reloads } = open([etc]);
    expect(store.error?.message).toBe(
      `${tree.path('etc/30-main.policy')}:1: not a file: ${tree.path('etc/include/later')}`,
    );
    const next = nextReload(reloads);
    tree.write('etc/include/later', '* * test-vm1 test-vm2 allow\n');
    await next;
    expect(decision(store)).toBe('allow target=test-vm2');
  });

  it('reload() re-reads on demand, and a closed store stops watching', async () => {
    const etc = tree.mkdir('etc');
    const reloads: LoadResult[] = [];
    store = new PolicyStore({ dirs: [etc], watch: false, onReload: (r) => reloads.push(r) });
    tree.write('etc/30-user.policy', '* * test-vm1 test-vm2 allow\n');
    expect(decision(store)).toBe('deny no matching rule found');
    store.reload();
    expect(decision(store)).toBe('allow target=test-vm2');
    expect(reloads).toHaveLength(2);

    const watched = open([etc]);
    watched.store.close();
    tree.write('etc/40-more.policy', '* * @anyvm @anyvm deny\n');
    await new Promise((r) => setTimeout(r, 150));
    expect(watched.reloads).toHaveLength(1);
  });
});
