import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request, startDaemon } from '../support/harness.js';
import { FakeVmm } from '../support/fake-vmm.js';
import { eventStream } from '../support/event-stream.js';
import { EVENT_QUEUE_MAX, unsupported, VmmError } from '@odyssey/hal';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let d: TestDaemon;
afterEach(async () => d?.stop());

async function withVms(vmm?: FakeVmm): Promise<TestDaemon> {
  d = await startDaemon(vmm ? { vmm } : {});
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  return d;
}

const state = async (vm: string) => (await d.ok('admin.vm.List', vm)).split(' ')[2];

/** The admin.Events stream of `work`. */
const eventsOf = (socket: string) => eventStream(socket, 'work');

/** Yields to the daemon until `condition` holds; the test's own timeout bounds it. */
async function eventually(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
}

describe('lifecycle through the Vmm', () => {
  it('starts, pauses, unpauses, kills, with upstream state errors', async () => {
    await withVms();
    const ev = eventsOf(d.socket);
    await ev.until('connection-established');
    await d.ok('admin.vm.Start', 'work');
    expect(d.vmm.calls).toEqual(['define work', 'start work']);
    expect(await state('work')).toBe('state=Running');
    expect(d.vmm.domains.get('work')?.spec.memoryMiB).toBe(400);
    await d.ok('admin.vm.Start', 'work');
    expect(d.vmm.calls.length).toBe(2);
    expect((await d.call('admin.vm.Unpause', 'work')).toString('latin1')).toBe(
      exc('QubesVMNotPausedError', "Domain is not paused: 'work'"),
    );
    await d.ok('admin.vm.Pause', 'work');
    expect(await state('work')).toBe('state=Paused');
    expect((await d.call('admin.vm.Shutdown', 'work')).toString('latin1')).toBe(
      exc('QubesVMNotRunningError', "Domain not running (either powered off or paused): 'work'"),
    );
    await d.ok('admin.vm.Unpause', 'work');
    expect(await d.ok('admin.vm.CurrentState', 'work')).toBe(
      'mem=409600 mem_static_max=4096000 cputime=1500000000 power_state=Running',
    );
    expect((await d.ok('admin.vm.property.Get', 'work', 'xid')).startsWith('default=True type=int ')).toBe(
      true,
    );
    expect(await d.ok('admin.vm.property.Get', 'work', 'xid')).not.toBe('default=True type=int -1');
    await d.ok('admin.vm.Kill', 'work');
    expect(await state('work')).toBe('state=Halted');
    expect((await d.call('admin.vm.Kill', 'work')).toString('latin1')).toBe(
      exc('QubesVMNotStartedError', "Domain is powered off: 'work'"),
    );
    // The last of the stop's events (the name alone would also match domain-shutdown-failed).
    await ev.until('\0domain-shutdown\0\0');
    ev.close();
    expect(d.logs.filter((l) => /^(info|warn): (start|pause|unpause|kill|shutdown) |halted/.test(l))).toEqual(
      [
        'info: start work: ok (Running)',
        'info: start work: ok (Running)',
        "warn: unpause work: failed: Domain is not paused: 'work'",
        'info: pause work: ok (Paused)',
        "warn: shutdown work: failed: Domain not running (either powered off or paused): 'work'",
        'info: unpause work: ok (Running)',
        'info: work halted (destroyed)',
        'info: kill work: ok (Halted)',
        "warn: kill work: failed: Domain is powered off: 'work'",
      ],
    );
    const names = [...ev.text().matchAll(/1\0work\0([^\0]+)\0/g)].map((m) => m[1]);
    expect(names).toEqual([
      'domain-pre-start',
      'property-reset:xid',
      'property-reset:stubdom_xid',
      'property-reset:start_time',
      'domain-spawn',
      'domain-start',
      'domain-pre-paused',
      'domain-paused',
      // Upstream announces the shutdown before refusing it for the paused domain, and the refusal after.
      'domain-pre-shutdown',
      'domain-shutdown-failed',
      'domain-pre-unpaused',
      'domain-unpaused',
      // A stop as upstream's _domain_stopped_coro announces it.
      'domain-stopped',
      'property-reset:xid',
      'property-reset:stubdom_xid',
      'property-reset:start_time',
      'domain-shutdown',
    ]);
  });

  it('answers QubesNotImplementedError for what the backend cannot do, and keeps the VM running', async () => {
    const vmm = new FakeVmm();
    vmm.pause = () => Promise.reject(new VmmError('unsupported', 'process domains cannot be paused'));
    await withVms(vmm);
    await d.ok('admin.vm.Start', 'work');
    expect((await d.call('admin.vm.Pause', 'work')).toString('latin1')).toBe(
      exc('QubesNotImplementedError', 'Cannot pause work: process domains cannot be paused'),
    );
    expect(await state('work')).toBe('state=Running');
  });

  it.for([
    { how: 'its capabilities say so', declared: false },
    { how: 'the call says so', declared: true },
  ])(
    'pauses a guest the backend cannot suspend ($how), as upstream does; Resume unpauses it',
    async ({ declared }) => {
      const vmm = new FakeVmm();
      const capabilities = vmm.capabilities.bind(vmm);
      if (!declared)
        vmm.capabilities = () => ({ ...capabilities(), suspend: unsupported('no suspend here') });
      let asked = 0;
      vmm.suspend = () => {
        asked++;
        return Promise.reject(new VmmError('unsupported', 'no suspend here'));
      };
      await withVms(vmm);
      await d.ok('admin.vm.Start', 'work');
      const ev = eventsOf(d.socket);
      await ev.until('connection-established');
      await d.ok('admin.vm.Suspend', 'work');
      expect(await state('work')).toBe('state=Paused');
      await ev.until('domain-paused');
      expect(ev.text()).toContain('domain-pre-paused');
      await d.ok('admin.vm.Resume', 'work');
      expect(await state('work')).toBe('state=Running');
      await ev.until('domain-unpaused');
      ev.close();
      expect(vmm.calls.filter((c) => /^(pause|unpause) /.test(c))).toEqual(['pause work', 'unpause work']);
      expect(asked).toBe(declared ? 1 : 0);
    },
  );

  it('notices a guest that dies on its own', async () => {
    await withVms();
    await d.ok('admin.vm.Start', 'work');
    d.vmm.crash('work');
    await eventually(async () => (await state('work')) === 'state=Halted');
  });

  it('gives the backend a shutdown timeout a timer can wait for, however long the property', async () => {
    const vmm = new FakeVmm();
    const timeouts: number[] = [];
    const shutdown = vmm.shutdown.bind(vmm);
    vmm.shutdown = (name, options) => {
      timeouts.push(options.timeoutMs);
      return shutdown(name, options);
    };
    await withVms(vmm);
    for (const seconds of ['60', '3000000', '12345678901234567890123']) {
      await d.ok('admin.vm.property.Set', 'work', 'shutdown_timeout', seconds);
      await d.ok('admin.vm.Start', 'work');
      await d.ok('admin.vm.Shutdown', 'work', 'wait');
    }
    // Node fires a timer of more than 2^31 - 1 ms after 1 ms: a shutdown would fail at once.
    expect(timeouts).toEqual([60_000, 2 ** 31 - 1, 2 ** 31 - 1]);
  });

  it('reads every state again when a flood of events outran it, and follows events after', async () => {
    await withVms();
    await d.ok('admin.vm.Start', 'work');
    d.vmm.crashSilently('work');
    // All published before the daemon reads one: more than a subscriber may fall behind by.
    d.vmm.publishBurst(
      Array.from({ length: EVENT_QUEUE_MAX + 1 }, (_, i) => ({ type: 'started' as const, name: `gone${i}` })),
    );
    // work's stop had no event: only the states read again after the dropped events show it.
    await eventually(async () => (await state('work')) === 'state=Halted');
    expect(d.logs.filter((l) => l.includes('backend events dropped'))).toHaveLength(1);
    expect(d.logs.some((l) => l.includes('event stream ended'))).toBe(false);
    await d.ok('admin.vm.Start', 'work');
    d.vmm.crash('work');
    await eventually(async () => (await state('work')) === 'state=Halted');
  });

  it("answers Kill of a guest that died before its stop event came as upstream's check would: not started, and Halted", async () => {
    await withVms();
    await d.ok('admin.vm.Start', 'work');
    d.vmm.crashSilently('work');
    expect((await d.call('admin.vm.Kill', 'work')).toString('latin1')).toBe(
      exc('QubesVMNotStartedError', "Domain is powered off: 'work'"),
    );
    expect(await state('work')).toBe('state=Halted');
  });

  it('believes the backend: a domain stopped with no event is Halted in CurrentState, with domain-shutdown', async () => {
    await withVms();
    await d.ok('admin.vm.Start', 'work');
    const events = eventsOf(d.socket);
    await events.until('connection-established');
    const dom = d.vmm.domains.get('work');
    if (!dom) throw new Error('work is not defined in the fake Vmm');
    dom.state = 'Halted';
    expect(await d.ok('admin.vm.CurrentState', 'work')).toContain('power_state=Halted');
    await events.until('domain-shutdown');
    events.close();
    expect(await state('work')).toBe('state=Halted');
  });

  it('shuts down with wait and starts the netvm first', async () => {
    await withVms();
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=net label=red');
    await d.ok('admin.vm.property.Set', 'net', 'provides_network', 'True');
    await d.ok('admin.vm.property.Set', 'work', 'netvm', 'net');
    await d.ok('admin.vm.Start', 'work');
    expect(d.vmm.calls).toEqual([
      'define net',
      'start net',
      'define work',
      'start work',
      'attachLink work>net 10.137.0.2 00:16:3e:5e:6c:00',
    ]);
    expect(d.vmm.domains.get('work')?.spec.network?.link?.backendDomain).toBe('net');
    expect(d.vmm.domains.get('net')?.spec.network).toEqual({ uplink: true });
    await d.ok('admin.vm.Shutdown', 'work', 'wait');
    expect(await state('work')).toBe('state=Halted');
    expect(await state('net')).toBe('state=Running');
  });

  it('refuses to start with prohibit-start', async () => {
    await withVms();
    await d.ok('admin.vm.feature.Set', 'work', 'prohibit-start', 'broken');
    expect((await d.call('admin.vm.Start', 'work')).toString('latin1')).toBe(
      exc('QubesException', 'Qube start is prohibited. Rationale: broken'),
    );
  });

  it('removes an auto_cleanup disposable when it stops', async () => {
    await withVms();
    await d.ok('admin.vm.property.Set', 'work', 'template_for_dispvms', 'True');
    const name = await d.ok('admin.vm.CreateDisposable', 'work');
    expect(name).toMatch(/^disp\d+$/);
    expect(await d.ok('admin.vm.tag.List', name)).toBe(
      `audiovm-dom0\ncreated-by-dom0\ndisp-created-by-dom0\nguivm-dom0\n`,
    );
    expect(await d.ok('admin.vm.property.Get', name, 'auto_cleanup')).toBe('default=False type=bool True');
    await d.ok('admin.vm.Start', name);
    await d.ok('admin.vm.Kill', name);
    expect((await d.call('admin.vm.List', name)).toString('latin1')).toBe(
      exc('QubesVMNotFoundError', `No such domain: '${name}'`),
    );
    const created = d.logs.indexOf(`info: disposable ${name} created (template work)`);
    expect(created).toBeGreaterThanOrEqual(0);
    expect(d.logs.slice(created)).toEqual(
      expect.arrayContaining([`info: kill ${name}: ok (Halted)`, `info: disposable ${name} removed`]),
    );
  });

  it('Remove undefines the domain in the backend; a qube never started is nothing to forget', async () => {
    const vmm = new FakeVmm();
    await withVms(vmm);
    await d.ok('admin.vm.Start', 'work');
    await d.ok('admin.vm.Kill', 'work');
    expect(vmm.domains.has('work')).toBe(true);
    await d.ok('admin.vm.Remove', 'work');
    expect(vmm.domains.has('work')).toBe(false);
    expect(vmm.calls).toContain('undefine work');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=never label=blue');
    await d.ok('admin.vm.Remove', 'never');
    expect(d.logs.filter((l) => l.includes('kept the domain'))).toEqual([]);
  });

  it('streams vm-stats for running VMs', async () => {
    await withVms();
    await d.ok('admin.property.Set', 'dom0', 'stats_interval', '1');
    await d.ok('admin.vm.Start', 'work');
    const r = await new Promise<string>((resolve) => {
      let buf = '';
      const s = connect(d.socket);
      s.on('connect', () => s.end(request('admin.vm.Stats', 'dom0')));
      s.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        if (buf.includes('online_vcpus')) {
          s.destroy();
          resolve(buf);
        }
      });
    });
    const msg = (...parts: string[]) => `1\x00${parts.join('\x00')}\x00\x00`;
    expect(r).toBe(
      msg('', 'connection-established') +
        msg(
          'work',
          'vm-stats',
          'memory_kb',
          '409600',
          'memory_assigned_total',
          '4096000',
          'memory_assigned_usable',
          '4096000',
          'memory_with_swap_used',
          '409600',
          'cpu_time',
          '2000',
          'cpu_usage',
          '7',
          'online_vcpus',
          '2',
        ),
    );
  });

  it('never takes a failed start that may still run for a running qube: it is killed once the hypervisor answers', async () => {
    const vmm = new FakeVmm();
    await withVms(vmm);
    const start = vmm.start.bind(vmm);
    const kill = vmm.kill.bind(vmm);
    let away = true;
    // libvirtd dies inside its start job: the guest runs on, and nothing can be killed until it is back.
    vmm.start = async (name) => {
      await start(name);
      throw new VmmError('unavailable', 'libvirtd died');
    };
    vmm.kill = async (name) => {
      if (away) throw new VmmError('unavailable', 'libvirtd is restarting');
      return kill(name);
    };
    expect((await d.call('admin.vm.Start', 'work')).toString('latin1')).toMatch(/^2\0/);
    expect(d.logs).toContain('warn: work: its failed start may still run; it is killed once fake answers');
    // What a reconnected backend reports of it: a domain that runs.
    vmm.publishBurst([{ type: 'started', name: 'work' }]);
    await new Promise((r) => setTimeout(r, 50));
    expect(await state('work')).toBe('state=Halted');
    expect((await d.call('admin.vm.Start', 'work')).toString('latin1')).toBe(
      exc('QubesVMError', 'work: the domain of its failed start may still run on its volumes'),
    );
    away = false;
    await eventually(() =>
      d.logs.includes('info: work: the domain of its failed start is down; volumes released'),
    );
    expect(vmm.domains.get('work')?.state).toBe('Halted');
    vmm.start = start;
    await d.ok('admin.vm.Start', 'work');
    expect(await state('work')).toBe('state=Running');
  });

  it('serves configuration but names the cause when the backend is unreachable', async () => {
    const vmm = new FakeVmm();
    vmm.openError = new Error('libvirtd is not running');
    await withVms(vmm);
    expect((await d.call('admin.vm.Start', 'work')).toString('latin1')).toBe(
      exc('QubesVMError', 'Cannot start work: backend fake is unavailable: libvirtd is not running'),
    );
    expect(d.logs).toContain(
      'warn: start work: failed: Cannot start work: backend fake is unavailable: libvirtd is not running',
    );
    vmm.openError = null;
    await eventually(() => d.daemon.backend.current !== null);
    await d.ok('admin.vm.Start', 'work');
    expect(await state('work')).toBe('state=Running');
  });

  it('refuses to start on a backend that cannot be loaded, naming the package, and keeps the state dir usable', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'odyssey-state-'));
    try {
      await expect(startDaemon({ stateDir, vmm: 'no-such-backend' })).rejects.toThrow(
        /cannot load backend package @odyssey\/backend-no-such-backend/,
      );
      // The failed start released the state dir: the next daemon takes it.
      d = await startDaemon({ stateDir });
      await d.ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=red');
    } finally {
      await d?.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
