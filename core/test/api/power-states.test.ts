import { afterEach, describe, expect, it } from 'vitest';

import { VmmError } from '@odyssey/hal';
import type { TestDaemon } from '../support/harness.js';
import { exc } from '../support/harness.js';
import { type EventStream, eventStream } from '../support/event-stream.js';
import { appendixA } from './fixture.js';

/**
 * The state checks of upstream's lifecycle methods (qubes/vm/qubesvm.py), on the state the
 * daemon last had from the hypervisor: is_running() is true for every state but Halted and NA,
 * is_paused() only for Paused, and start() compares with Halted. Halting, Dying and Crashed come
 * from the hypervisor (libvirt's SHUTDOWN, SHUTOFF while still active, CRASHED), never from a
 * Shutdown request itself. Each expected reply and event is upstream's for that state.
 */
let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.stop();
  d = undefined;
});

function daemon(): TestDaemon {
  if (!d) throw new Error('no daemon');
  return d;
}

/** Appendix A with work and dvm1 on no netvm: the fake's calls are then their own lifecycle calls only. */
async function offline(): Promise<TestDaemon> {
  const t = await appendixA();
  await t.ok('admin.vm.property.Set', 'work', 'netvm', '');
  await t.ok('admin.vm.property.Set', 'dvm1', 'netvm', '');
  return t;
}

const text = async (method: string, dest: string, arg = '', payload = '') =>
  (await daemon().call(method, dest, arg, payload)).toString('latin1');

const listed = async (vm: string) => (await daemon().ok('admin.vm.List', vm)).split(' ')[2];

const powerState = async (vm: string) =>
  (await daemon().ok('admin.vm.CurrentState', vm)).split('power_state=')[1];

/** Sets the state the fake hypervisor reports for a domain, with no event (as libvirt's getInfo sees it). */
function backendSays(vm: string, state: 'Halting' | 'Dying' | 'Crashed' | 'Halted'): void {
  const dom = daemon().vmm.domains.get(vm);
  if (!dom) throw new Error(`${vm} is not defined in the fake Vmm`);
  dom.state = state;
  if (state === 'Halted') dom.xid = -1;
}

/** The admin.Events stream of dom0 (every qube), once it is established. */
async function events(): Promise<EventStream> {
  const stream = eventStream(daemon().socket, 'dom0');
  await stream.until('connection-established');
  return stream;
}

/** One event of `vm` as it goes on the wire: its name, then each argument's key and value. */
const wire = (vm: string, name: string, ...args: string[]) => `1\0${vm}\0${[name, ...args].join('\0')}\0\0`;

/** The names of the events of `vm` in the stream, in order. */
const namesOf = (stream: string, vm: string) =>
  [...stream.matchAll(/1\0([^\0]*)\0([^\0]+)\0/g)].filter((m) => m[1] === vm).map((m) => m[2]);

describe('checks of a paused or suspended qube', () => {
  it('Suspend of a paused qube and Pause of a suspended one go to the hypervisor', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Pause', 'work');
    expect(await text('admin.vm.Suspend', 'work')).toBe('0\0');
    expect(await listed('work')).toBe('state=Suspended');
    expect(await text('admin.vm.Pause', 'work')).toBe('0\0');
    expect(await listed('work')).toBe('state=Paused');
    expect(d.vmm.calls.slice(-3)).toEqual(['pause work', 'suspend work', 'pause work']);
  });

  it('Shutdown of a paused qube is refused unless forced, announced as domain-shutdown-failed; forced, it is destroyed', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Pause', 'work');
    const ev = await events();
    const refusal = "Domain not running (either powered off or paused): 'work'";
    expect(await text('admin.vm.Shutdown', 'work')).toBe(exc('QubesVMNotRunningError', refusal));
    await ev.until(wire('work', 'domain-shutdown-failed', 'reason', refusal));
    expect(await text('admin.vm.Shutdown', 'work', 'force')).toBe('0\0');
    expect(d.vmm.calls.at(-1)).toBe('kill work');
    expect(await listed('work')).toBe('state=Halted');
    ev.close();
  });

  it('a paused preloaded disposable is destroyed by a Shutdown without force', async () => {
    d = await offline();
    const disp = await d.ok('admin.vm.CreateDisposable', 'dvm1');
    await d.ok('admin.vm.Start', disp);
    await d.ok('admin.vm.Pause', disp);
    d.daemon.app.domains.byName(disp)?.features.set('preload-dispvm-in-progress', '1');
    expect(await text('admin.vm.Shutdown', disp)).toBe('0\0');
    // Destroyed, then removed as an auto_cleanup disposable is once it stopped.
    expect(d.vmm.calls.slice(-3)).toEqual([`pause ${disp}`, `kill ${disp}`, `undefine ${disp}`]);
  });
});

describe('a qube the hypervisor has going down', () => {
  for (const state of ['Halting', 'Dying', 'Crashed'] as const) {
    it(`${state}: CurrentState and List say so; Start leaves it be, Unpause refuses, Suspend and Kill go to the hypervisor`, async () => {
      d = await offline();
      await d.ok('admin.vm.Start', 'work');
      backendSays('work', state);
      expect(await powerState('work')).toBe(state);
      expect(await listed('work')).toBe(`state=${state}`);
      const calls = d.vmm.calls.length;
      expect(await text('admin.vm.Start', 'work')).toBe('0\0');
      expect(await text('admin.vm.Unpause', 'work')).toBe(
        exc('QubesVMNotPausedError', "Domain is not paused: 'work'"),
      );
      expect(await text('admin.vm.Suspend', 'work')).toBe('0\0');
      expect(await text('admin.vm.Kill', 'work')).toBe('0\0');
      expect(d.vmm.calls.slice(calls)).toEqual(['suspend work', 'kill work']);
      expect(await listed('work')).toBe('state=Halted');
    });
  }

  it('a Shutdown leaves the state to the hypervisor: Running until it says Halting, Halted once it stopped', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    const vmm = d.vmm;
    let stopped = (): void => undefined;
    vmm.shutdown = () =>
      new Promise<void>((resolve) => {
        stopped = () => {
          backendSays('work', 'Halted');
          resolve();
        };
      });
    const ev = await events();
    expect(await text('admin.vm.Shutdown', 'work')).toBe('0\0');
    expect(await powerState('work')).toBe('Running');
    backendSays('work', 'Halting');
    expect(await powerState('work')).toBe('Halting');
    expect(await listed('work')).toBe('state=Halting');
    // Asked again while it goes down: accepted, as upstream sends its shutdown request again.
    expect(await text('admin.vm.Shutdown', 'work')).toBe('0\0');
    while (namesOf(ev.text(), 'work').length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(namesOf(ev.text(), 'work')).toEqual(['domain-pre-shutdown', 'domain-pre-shutdown']);
    stopped();
    await ev.until(wire('work', 'domain-shutdown'));
    expect(await listed('work')).toBe('state=Halted');
    ev.close();
  });

  it('Pause of a Halting qube goes to the hypervisor', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    backendSays('work', 'Halting');
    expect(await text('admin.vm.Pause', 'work')).toBe('0\0');
    expect(await listed('work')).toBe('state=Paused');
  });
});

describe('a domain that stopped with no event', () => {
  it('is halted once CurrentState has asked the hypervisor, its stop announced before the next start', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    d.vmm.crashSilently('work');
    const ev = await events();
    expect(await powerState('work')).toBe('Halted');
    expect(await listed('work')).toBe('state=Halted');
    expect(await text('admin.vm.Shutdown', 'work')).toBe(
      exc('QubesVMNotStartedError', "Domain is powered off: 'work'"),
    );
    const calls = d.vmm.calls.length;
    expect(await text('admin.vm.Start', 'work')).toBe('0\0');
    expect(d.vmm.calls.slice(calls)).toEqual(['define work', 'start work']);
    await ev.until(wire('work', 'domain-start', 'start_guid', 'True'));
    const names = namesOf(ev.text(), 'work');
    expect(names.indexOf('domain-shutdown')).toBeGreaterThanOrEqual(0);
    expect(names.indexOf('domain-shutdown')).toBeLessThan(names.indexOf('domain-pre-start'));
    ev.close();
  });
});

describe('events of a start and a stop', () => {
  it("announce a stop in upstream's order, domain-shutdown last and without arguments", async () => {
    d = await offline();
    const ev = await events();
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Kill', 'work');
    await ev.until(wire('work', 'domain-shutdown'));
    expect(namesOf(ev.text(), 'work')).toEqual([
      'domain-pre-start',
      'property-reset:xid',
      'property-reset:stubdom_xid',
      'property-reset:start_time',
      'domain-spawn',
      'domain-start',
      'domain-stopped',
      'property-reset:xid',
      'property-reset:stubdom_xid',
      'property-reset:start_time',
      'domain-shutdown',
    ]);
    ev.close();
  });

  it('prohibit-start: announced as domain-start-failed; an empty one prohibits nothing', async () => {
    d = await offline();
    const ev = await events();
    const reason = 'Qube start is prohibited. Rationale: broken';
    await d.ok('admin.vm.feature.Set', 'work', 'prohibit-start', 'broken');
    expect(await text('admin.vm.Start', 'work')).toBe(exc('QubesException', reason));
    await ev.until(wire('work', 'domain-start-failed', 'reason', reason));
    ev.close();
    await d.ok('admin.vm.feature.Set', 'work', 'prohibit-start', '');
    expect(await text('admin.vm.Start', 'work')).toBe('0\0');
    expect(await listed('work')).toBe('state=Running');
  });

  it('a qube whose restore is under way (tag backup-restore-in-progress) does not start, as upstream', async () => {
    d = await offline();
    const ev = await events();
    const reason = 'Restore of this domain in progress, cannot start';
    await d.ok('admin.vm.tag.Set', 'work', 'backup-restore-in-progress');
    expect(await text('admin.vm.Start', 'work')).toBe(exc('QubesVMError', reason));
    await ev.until(wire('work', 'domain-start-failed', 'reason', reason));
    ev.close();
    expect(d.vmm.calls).not.toContain('start work');
    await d.ok('admin.vm.tag.Remove', 'work', 'backup-restore-in-progress');
    expect(await text('admin.vm.Start', 'work')).toBe('0\0');
  });

  it('a required device that is missing stops the start before the netvm is started', async () => {
    d = await appendixA();
    await d.ok(
      'admin.vm.device.pci.Assign',
      'work',
      'dom0+00_14.0',
      "device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'",
    );
    expect(await text('admin.vm.Start', 'work')).toBe(
      exc('QubesException', 'Pci device dom0:00_14.0:* not available'),
    );
    expect(await listed('sys-net')).toBe('state=Halted');
    expect(d.vmm.calls).toEqual([]);
  });

  it('netvm in use: the refusal is announced as domain-shutdown-failed', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    const ev = await events();
    const reason = 'There are other VMs connected to this VM: work';
    expect(await text('admin.vm.Shutdown', 'sys-net')).toBe(exc('QubesVMInUseError', reason));
    await ev.until(wire('sys-net', 'domain-shutdown-failed', 'reason', reason));
    ev.close();
  });
});

describe('a shutdown the guest does not finish', () => {
  it('with wait: QubesVMShutdownTimeoutError in upstream words, the reason in domain-shutdown-failed; still Running', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    d.vmm.shutdown = () => Promise.reject(new VmmError('timeout', 'work did not shut down within 60000 ms'));
    const ev = await events();
    expect(await text('admin.vm.Shutdown', 'work', 'wait')).toBe(
      exc('QubesVMShutdownTimeoutError', "Domain shutdown timed out: 'work'"),
    );
    await ev.until(
      wire('work', 'domain-shutdown-failed', 'reason', 'work did not shut down within 60000 ms'),
    );
    ev.close();
    expect(await powerState('work')).toBe('Running');
  });
});

describe('a forced shutdown', () => {
  it('asks the guest as any shutdown does and never destroys it: force only skips the checks', async () => {
    d = await offline();
    await d.ok('admin.vm.Start', 'work');
    const vmm = d.vmm;
    const asked: unknown[] = [];
    vmm.shutdown = (name, options) => {
      asked.push(options);
      vmm.calls.push(`shutdown ${name}`);
      return Promise.reject(new VmmError('timeout', 'work did not shut down within 60000 ms'));
    };
    const calls = vmm.calls.length;
    expect(await text('admin.vm.Shutdown', 'work', 'force+wait')).toBe(
      exc('QubesVMShutdownTimeoutError', "Domain shutdown timed out: 'work'"),
    );
    expect(vmm.calls.slice(calls)).toEqual(['shutdown work']);
    expect(asked).toEqual([{ timeoutMs: 60_000 }]);
    expect(await powerState('work')).toBe('Running');
  });
});

describe('a Start while the stop before it is still being handled', () => {
  it('waits for that stop to be announced, as upstream handles a pending stop before starting', async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    const { app, lifecycle } = d.daemon;
    const seen: string[] = [];
    app.events.subscribe((e) => {
      if (e.subject?.name === 'work') seen.push(e.name);
    });
    // The stop's handling takes work's link out of sys-net: held until released.
    let release = (): void => undefined;
    const detached = new Promise<void>((resolve) => (release = resolve));
    d.vmm.detachLink = async () => detached;
    let entered = (): void => undefined;
    const startEntered = new Promise<void>((resolve) => (entered = resolve));
    const start = lifecycle.start.bind(lifecycle);
    lifecycle.start = (vm) => {
      if (vm.name === 'work') entered();
      return start(vm);
    };
    const killed = text('admin.vm.Kill', 'work');
    while (!seen.includes('domain-stopped')) await new Promise((r) => setImmediate(r));
    const started = text('admin.vm.Start', 'work');
    try {
      await startEntered;
      // Everything the start would do without waiting happens within these turns.
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      expect(seen.at(-1)).toBe('domain-stopped');
    } finally {
      release();
    }
    expect(await killed).toBe('0\0');
    expect(await started).toBe('0\0');
    const from = seen.indexOf('domain-stopped');
    expect(seen.slice(from, seen.indexOf('domain-pre-start', from) + 1)).toEqual([
      'domain-stopped',
      'property-reset:xid',
      'property-reset:stubdom_xid',
      'property-reset:start_time',
      'domain-shutdown',
      'domain-pre-start',
    ]);
  });
});

describe('two Starts at once', () => {
  it("start the domain once, both answering success, as under upstream's startup lock", async () => {
    d = await appendixA();
    await d.ok('admin.vm.Start', 'work');
    const seen: string[] = [];
    d.daemon.app.events.subscribe((e) => {
      if (e.subject?.name === 'work') seen.push(e.name);
    });
    // Both wait for the same stop to be handled, then go on in the same turn.
    let release = (): void => undefined;
    const detached = new Promise<void>((resolve) => (release = resolve));
    d.vmm.detachLink = async () => detached;
    const killed = text('admin.vm.Kill', 'work');
    while (!seen.includes('domain-stopped')) await new Promise((r) => setImmediate(r));
    const { lifecycle } = d.daemon;
    const start = lifecycle.start.bind(lifecycle);
    let entered = 0;
    lifecycle.start = (vm) => {
      if (vm.name === 'work') entered++;
      return start(vm);
    };
    const calls = d.vmm.calls.length;
    const replies = Promise.all([text('admin.vm.Start', 'work'), text('admin.vm.Start', 'work')]);
    while (entered < 2) await new Promise((r) => setImmediate(r));
    release();
    expect(await killed).toBe('0\0');
    expect(await replies).toEqual(['0\0', '0\0']);
    expect(d.vmm.calls.slice(calls).filter((c) => c === 'start work')).toHaveLength(1);
  });
});

describe('a qube still starting', () => {
  it('refuses Pause and Suspend as not running, before any event, and the start goes on', async () => {
    d = await offline();
    const stream = await events();
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const start = d.vmm.start.bind(d.vmm);
    d.vmm.start = async (name) => {
      await held;
      return start(name);
    };
    const starting = text('admin.vm.Start', 'work');
    while (!d.vmm.calls.includes('define work')) await new Promise((r) => setImmediate(r));
    const notRunning = exc(
      'QubesVMNotRunningError',
      "Domain not running (either powered off or paused): 'work'",
    );
    expect(await text('admin.vm.Pause', 'work')).toBe(notRunning);
    expect(await text('admin.vm.Suspend', 'work')).toBe(notRunning);
    release();
    expect(await starting).toBe('0\0');
    expect(await listed('work')).toBe('state=Running');
    stream.close();
    expect(namesOf(stream.text(), 'work')).not.toContain('domain-pre-paused');
    expect(d.vmm.calls.filter((c) => /^(pause|suspend) /.test(c))).toEqual([]);
  });
});
