import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { VmmError } from '@odyssey/hal';

import type { QubesEvent } from '../../src/model/events.js';
import { FakeVmm } from '../support/fake-vmm.js';
import type { TestDaemon } from '../support/harness.js';
import { exc, startDaemon } from '../support/harness.js';

let d: TestDaemon | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await d?.stop();
  d = undefined;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Yields to the daemon until `condition` holds; the test's own timeout bounds it. */
async function eventually(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
}

/** A daemon with the disposable template `work`, whose tools announce the preload services. */
async function withTemplate(options: { stateDir?: string; vmm?: FakeVmm } = {}): Promise<TestDaemon> {
  d = await startDaemon(options);
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (const f of [
    'qrexec',
    'supported-rpc.qubes.WaitForRunningSystem',
    'supported-rpc.qubes.WaitForSession',
  ])
    await d.ok('admin.vm.feature.Set', 'tpl', f, '1');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  await d.ok('admin.vm.property.Set', 'work', 'template_for_dispvms', 'True');
  // No wait before a refill: the tests follow the pool by its features, never by a clock.
  await d.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-delay', '0');
  return d;
}

function recorded(t: TestDaemon): QubesEvent[] {
  const events: QubesEvent[] = [];
  t.daemon.app.events.subscribe((e) => {
    if (e.name.startsWith('domain-preload-dispvm-')) events.push(e);
  });
  return events;
}

const show = (e: QubesEvent) =>
  `${e.subject?.name} ${e.name} ${Object.entries(e.args)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`;

async function feature(t: TestDaemon, vm: string, name: string): Promise<string | null> {
  const r = (await t.call('admin.vm.feature.Get', vm, name)).toString('latin1');
  return r.startsWith('0\0') ? r.slice(2) : null;
}

async function pool(t: TestDaemon): Promise<string[]> {
  const v = await feature(t, 'work', 'preload-dispvm');
  return v ? v.split(' ') : [];
}

const listLine = async (t: TestDaemon, vm: string) =>
  (await t.ok('admin.vm.List', vm)).split(' ').slice(0, 3);

/** The pool is full and every preload in it completed (paused), as CreateDisposable+preload leaves it. */
async function full(t: TestDaemon, n: number): Promise<string[]> {
  await eventually(async () => {
    const names = await pool(t);
    if (names.length !== n) return false;
    for (const name of names) if ((await feature(t, name, 'preload-dispvm-completed')) !== '1') return false;
    return true;
  });
  return pool(t);
}

describe('preloaded disposables', () => {
  it('preloads up to preload-dispvm-max, started and paused, marked internal', async () => {
    const t = await withTemplate();
    const events = recorded(t);
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const names = await full(t, 2);
    expect(events.map(show)).toContain(
      "work domain-preload-dispvm-start reason=local feature was set to '2'",
    );
    for (const name of names) {
      expect(await listLine(t, name)).toEqual([name, 'class=DispVM', 'state=Paused']);
      expect(await feature(t, name, 'internal')).toBe('1');
      expect(await feature(t, name, 'preload-dispvm-in-progress')).toBe('');
      expect(await t.ok('admin.vm.property.Get', name, 'is_preload')).toBe('default=True type=bool True');
      // Preload bookkeeping never reaches the disposable's own features from its template.
      expect(await feature(t, name, 'preload-dispvm-max')).toBeNull();
      expect(t.vmm.calls).toEqual(expect.arrayContaining([`start ${name}`, `pause ${name}`]));
    }
  });

  it('CreateDisposable takes the first preload, unpaused and ordinary, and the pool refills', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const [first, second] = await full(t, 2);
    const events = recorded(t);
    const name = await t.ok('admin.vm.CreateDisposable', 'work');
    expect(name).toBe(first);
    expect(await listLine(t, name)).toEqual([name, 'class=DispVM', 'state=Running']);
    expect(await feature(t, name, 'internal')).toBeNull();
    expect(await feature(t, name, 'preload-dispvm-in-progress')).toBeNull();
    expect(await feature(t, name, 'preload-dispvm-completed')).toBe('1');
    expect(await t.ok('admin.vm.property.Get', name, 'is_preload')).toBe('default=True type=bool False');
    expect(await t.ok('admin.vm.tag.List', name)).toContain('created-by-dom0\ndisp-created-by-dom0\n');
    // Start of a running qube changes nothing, as upstream; that is how @dispvm calls use a preload.
    await t.ok('admin.vm.Start', name);
    expect(events.map(show)).toContain(`work domain-preload-dispvm-used dispvm=${name} delay=0.0`);
    const refilled = await full(t, 2);
    expect(refilled[0]).toBe(second);
    expect(refilled).not.toContain(name);
    await t.ok('admin.vm.Kill', name);
    expect((await t.call('admin.vm.List', name)).toString('latin1')).toBe(
      exc('QubesVMNotFoundError', `No such domain: '${name}'`),
    );
  });

  it('a preload unpaused by a client counts as used: it leaves the pool, which refills', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const [name = ''] = await full(t, 1);
    const events = recorded(t);
    await t.ok('admin.vm.Unpause', name);
    await eventually(() => events.some((e) => e.name === 'domain-preload-dispvm-used'));
    expect(await feature(t, name, 'internal')).toBeNull();
    expect(await feature(t, name, 'preload-dispvm-in-progress')).toBe('');
    expect(await t.ok('admin.vm.property.Get', name, 'is_preload')).toBe('default=True type=bool False');
    expect(events.map(show)).toContain(`work domain-preload-dispvm-used dispvm=${name} delay=0.0`);
    const refilled = await full(t, 1);
    expect(refilled).not.toContain(name);
    expect(await listLine(t, name)).toEqual([name, 'class=DispVM', 'state=Running']);
  });

  it('lowering the maximum kills the excess; deleting it empties the pool', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '3');
    const names = await full(t, 3);
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    await eventually(
      async () => (await pool(t)).length === 1 && !t.daemon.app.domains.byName(names[2] ?? ''),
    );
    expect(await pool(t)).toEqual([names[0]]);
    await eventually(() => !t.daemon.app.domains.byName(names[1] ?? ''));
    await t.ok('admin.vm.feature.Remove', 'work', 'preload-dispvm-max');
    await eventually(() => !t.daemon.app.domains.byName(names[0] ?? ''));
    expect(await pool(t)).toEqual([]);
    expect(t.vmm.calls).toContain(`kill ${names[0]}`);
  });

  it('a preload that crashes leaves the pool and is removed; the next request refills', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const [name] = await full(t, 1);
    t.vmm.crash(name ?? '');
    await eventually(() => !t.daemon.app.domains.byName(name ?? ''));
    expect(await pool(t)).toEqual([]);
    // No preload ready: a fresh disposable, halted, and the gap is filled behind it.
    const events = recorded(t);
    const fresh = await t.ok('admin.vm.CreateDisposable', 'work');
    expect(events.map(show)).toEqual(['work domain-preload-dispvm-start reason=there is a gap delay=5']);
    expect(await listLine(t, fresh)).toEqual([fresh, 'class=DispVM', 'state=Halted']);
    await t.ok('admin.vm.CreateDisposable', 'work', 'preload');
    expect(await full(t, 1)).not.toContain(fresh);
  });

  it('CreateDisposable+preload returns once the pool is full; the global maximum on dom0 rules default_dispvm', async () => {
    const t = await withTemplate();
    await t.ok('admin.property.Set', 'dom0', 'default_dispvm', 'work');
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    await full(t, 1);
    await t.ok('admin.vm.feature.Set', 'dom0', 'preload-dispvm-max', '2');
    await t.ok('admin.vm.CreateDisposable', 'work', 'preload');
    const names = await pool(t);
    expect(names).toHaveLength(2);
    for (const n of names) expect(await feature(t, n, 'preload-dispvm-completed')).toBe('1');
  });

  it("a template that starts or stops following dom0's maximum offloads or refills to it; one that is no number means none", async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    await full(t, 1);
    // Stored while no default_dispvm checks it. Upstream then stores default_dispvm and fails on
    // int('x'), as its CreateDisposable does after it.
    await t.ok('admin.vm.feature.Set', 'dom0', 'preload-dispvm-max', 'x');
    const events = recorded(t);
    await t.ok('admin.property.Set', 'dom0', 'default_dispvm', 'work');
    await eventually(async () => (await pool(t)).length === 0);
    expect(await t.ok('admin.vm.CreateDisposable', 'work')).toMatch(/^disp\d+$/);
    expect(await pool(t)).toEqual([]);
    // No longer the default disposable template: its own maximum rules again.
    await t.ok('admin.property.Reset', 'dom0', 'default_dispvm');
    await full(t, 1);
    expect(events.filter((e) => e.name === 'domain-preload-dispvm-start').map(show)).toEqual([
      'work domain-preload-dispvm-start reason=it became the default_dispvm',
      'work domain-preload-dispvm-start reason=it was the default_dispvm',
    ]);
  });

  it('a preload whose start fails fails CreateDisposable+preload, is removed, and the daemon carries on', async () => {
    /** A hypervisor on which no disposable starts, as a guest whose agent never connects. */
    class NoDisposableStarts extends FakeVmm {
      override async start(name: string): Promise<void> {
        if (name.startsWith('disp')) throw new VmmError('invalid-state', `${name} did not boot`);
        return super.start(name);
      }
    }
    const t = await withTemplate({ vmm: new NoDisposableStarts() });
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const reply = (await t.call('admin.vm.CreateDisposable', 'work', 'preload')).toString('latin1');
    expect(reply).toMatch(/^2\0QubesException\0\0Start failed: disp\d+ did not boot\0$/);
    expect(await pool(t)).toEqual([]);
    expect(t.daemon.app.domains.list().filter((vm) => vm.klass === 'DispVM')).toEqual([]);
    expect(await t.ok('admin.vm.List', 'work')).toMatch(/^work class=AppVM state=Halted/);
  });

  it('a restart keeps completed preloads that still run and drops those that stopped meanwhile', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'odyssey-preload-'));
    dirs.push(stateDir);
    const vmm = new FakeVmm();
    let t = await withTemplate({ stateDir, vmm });
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const [kept, stopped] = await full(t, 2);
    await t.stop();
    await vmm.kill(stopped ?? '');
    t = d = await startDaemon({ stateDir, vmm });
    // The pool as the last run left it lists both until the restored daemon has looked at them.
    await eventually(async () => !(await pool(t)).includes(stopped ?? ''));
    const refilled = await full(t, 2);
    expect(refilled[0]).toBe(kept);
    expect(refilled).not.toContain(stopped);
    expect(t.daemon.app.domains.byName(stopped ?? '')).toBeUndefined();
    expect(await listLine(t, kept ?? '')).toEqual([kept, 'class=DispVM', 'state=Paused']);
  });
});

describe('outdated preloaded disposables', () => {
  const removed = (t: TestDaemon, names: readonly string[]) =>
    eventually(() => names.every((n) => !t.daemon.app.domains.byName(n)));

  it('a template property its disposables share outdates the preloads: they leave the pool at once and go', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const old = await full(t, 2);
    const events = recorded(t);
    // A disposable's memory, vcpus, kernel... follow its template's by default: debug is its own.
    await t.ok('admin.vm.property.Set', 'work', 'debug', 'True');
    expect(await pool(t)).toEqual([]);
    expect(events.map(show)).toEqual([
      'work domain-preload-dispvm-start reason=of outdated volume(s) delay=30',
    ]);
    await removed(t, old);
    for (const name of old) expect(t.vmm.calls).toContain(`kill ${name}`);
    const fresh = await t.ok('admin.vm.CreateDisposable', 'work');
    expect(old).not.toContain(fresh);
    expect(await listLine(t, fresh)).toEqual([fresh, 'class=DispVM', 'state=Halted']);
    await t.ok('admin.vm.CreateDisposable', 'work', 'preload');
    for (const name of await full(t, 2)) {
      expect(old).not.toContain(name);
      expect(await t.ok('admin.vm.property.Get', name, 'debug')).toBe('default=False type=bool True');
    }
  });

  it('an ignored template property leaves the preloads alone', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const [name] = await full(t, 1);
    const events = recorded(t);
    // A disposable is left out of backups by default: this value differs from the preload's.
    await t.ok('admin.vm.property.Set', 'work', 'include_in_backups', 'True');
    expect(await t.ok('admin.vm.property.Get', name ?? '', 'include_in_backups')).toBe(
      'default=True type=bool False',
    );
    expect(await pool(t)).toEqual([name]);
    expect(await t.ok('admin.vm.CreateDisposable', 'work')).toBe(name);
    expect(events.map(show)).not.toContain(expect.stringContaining('outdated'));
  });

  it('a request skips and removes a preload snapshotted before its template volume changed', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const [stale = ''] = await full(t, 1);
    await t.ok('admin.vm.volume.Resize', 'work', 'private', String(3 * 1024 ** 3));
    // Only a request looks at volumes: the stale one stays listed until then.
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const [first, current] = await full(t, 2);
    expect(first).toBe(stale);
    const events = recorded(t);
    expect(await t.ok('admin.vm.CreateDisposable', 'work')).toBe(current);
    const left = await pool(t);
    expect(left).not.toContain(stale);
    expect(left).not.toContain(current);
    expect(t.logs).toContain(
      `warn: ${stale}: discarding preloaded disposable as it has volumes_outdated: private`,
    );
    await removed(t, [stale]);
    expect(events.map(show)).toContain(`work domain-preload-dispvm-used dispvm=${current} delay=0.0`);
  });

  it('with only outdated preloads a request gets a fresh disposable and the gap is refilled', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '2');
    const old = await full(t, 2);
    await t.ok('admin.vm.volume.Resize', 'work', 'private', String(3 * 1024 ** 3));
    const events = recorded(t);
    const fresh = await t.ok('admin.vm.CreateDisposable', 'work');
    expect(old).not.toContain(fresh);
    expect(await listLine(t, fresh)).toEqual([fresh, 'class=DispVM', 'state=Halted']);
    expect(await pool(t)).toEqual([]);
    expect(events.map(show)).toEqual(['work domain-preload-dispvm-start reason=there is a gap delay=5']);
    await removed(t, old);
  });

  it('a template that ran outdates the preloads of its disposable templates once it stops', async () => {
    const t = await withTemplate();
    await t.ok('admin.vm.feature.Set', 'work', 'preload-dispvm-max', '1');
    const old = await full(t, 1);
    const events = recorded(t);
    await t.ok('admin.vm.Start', 'tpl');
    expect(await pool(t)).toEqual(old);
    await t.ok('admin.vm.Shutdown', 'tpl');
    await eventually(async () => (await pool(t)).length === 0);
    expect(events.map(show)).toContain(
      'work domain-preload-dispvm-start reason=of outdated volume(s) delay=4',
    );
    await removed(t, old);
  });
});
