import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VmmError, type DomainSpec, type VmmEvent } from '@odyssey/hal';
import { ProcessVmm } from '../src/index.js';

const AGENT = fileURLToPath(new URL('../../../agent/dist/agent-main.js', import.meta.url));

const spec = (name: string): DomainSpec => ({
  name,
  uuid: '6d1f0c54-5d1b-4ad6-9a1e-0c1f1b6f5a01',
  memoryMiB: 400,
  maxMemoryMiB: 4000,
  vcpus: 2,
  virtMode: 'pvh',
  volumes: [],
  debug: false,
});

let runtimeDir: string;
let vmms: ProcessVmm[];

async function openVmm(): Promise<{ vmm: ProcessVmm; events: VmmEvent[] }> {
  const vmm = new ProcessVmm({ runtimeDir, agentMain: AGENT, log: () => undefined });
  const events: VmmEvent[] = [];
  // Subscribed before open(), so nothing published while adopting is missed.
  const stream = vmm.events();
  void (async () => {
    for await (const event of stream) events.push(event);
  })();
  await vmm.open();
  vmms.push(vmm);
  return { vmm, events };
}

/** Yields until `condition` holds; the test's own timeout bounds it, not a count of ticks. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 20));
}

async function procState(pid: number): Promise<string> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[0] ?? '?';
}

beforeEach(async () => {
  if (!existsSync(AGENT)) throw new Error('build the agent first: npx tsc -b agent');
  runtimeDir = await mkdtemp(join(tmpdir(), 'odyssey-process-'));
  vmms = [];
});

afterEach(async () => {
  for (const vmm of vmms) {
    for (const name of ['work', 'other']) await vmm.kill(name).catch(() => undefined);
    await vmm.close();
  }
  await rm(runtimeDir, { recursive: true, force: true });
});

describe('ProcessVmm', () => {
  it('runs a domain as an agent process: start, state, stats, pause, shutdown', async () => {
    const { vmm, events } = await openVmm();
    await vmm.define(spec('work'));
    await vmm.start('work');
    expect((await stat(vmm.layout.agentSocket('work'))).isSocket()).toBe(true);
    const running = await vmm.state('work');
    expect(running).toMatchObject({ state: 'Running', xid: 1, memoryMaxKb: 4000 * 1024 });
    expect(running.memoryKb).toBeGreaterThan(0);
    const record = JSON.parse(await readFile(vmm.layout.record('work'), 'utf8')) as { pid: number };
    expect(await vmm.stats()).toEqual([
      expect.objectContaining({ name: 'work', memoryMaxKb: 4000 * 1024, onlineVcpus: 2 }),
    ]);

    await vmm.pause('work');
    expect((await vmm.state('work')).state).toBe('Paused');
    await until(() => events.some((e) => e.type === 'paused'));
    // SIGSTOP takes effect when the kernel next schedules the agent, which on a loaded machine is later.
    let stopped = await procState(record.pid);
    while (stopped === 'R' || stopped === 'S') {
      await new Promise((r) => setTimeout(r, 10));
      stopped = await procState(record.pid);
    }
    expect(stopped).toBe('T');
    await vmm.unpause('work');
    expect((await vmm.state('work')).state).toBe('Running');

    await vmm.shutdown('work', { timeoutMs: 5000 });
    expect(await vmm.state('work')).toEqual({
      state: 'Halted',
      xid: -1,
      memoryKb: 0,
      memoryMaxKb: 0,
      cpuTimeNs: 0,
    });
    await until(() => events.length === 4);
    expect(events).toEqual([
      { type: 'started', name: 'work' },
      { type: 'paused', name: 'work' },
      { type: 'unpaused', name: 'work' },
      { type: 'stopped', name: 'work', reason: 'shutdown' },
    ]);
    expect(existsSync(vmm.layout.record('work'))).toBe(false);
  });

  it('gives up a shutdown the domain does not finish in time and leaves it running, as upstream', async () => {
    const { vmm } = await openVmm();
    await vmm.define(spec('work'));
    await vmm.start('work');
    const { pid } = JSON.parse(await readFile(vmm.layout.record('work'), 'utf8')) as { pid: number };
    // Stopped behind the backend's back: the SIGTERM waits until the process runs again.
    process.kill(pid, 'SIGSTOP');
    const refused = await vmm.shutdown('work', { timeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(VmmError);
    expect((refused as VmmError).code).toBe('timeout');
    expect(await procState(pid)).toBe('T');
    expect((await vmm.state('work')).state).toBe('Running');
    process.kill(pid, 'SIGCONT');
    await until(() => !existsSync(vmm.layout.record('work')));
    expect((await vmm.state('work')).state).toBe('Halted');
  });

  it("reports what the host pays for a paused domain: its agent's proportional set, below its RSS", async () => {
    const { vmm } = await openVmm();
    await vmm.define(spec('work'));
    await vmm.start('work');
    await vmm.pause('work');
    const { pid } = JSON.parse(await readFile(vmm.layout.record('work'), 'utf8')) as { pid: number };
    const field = async (file: string, name: string): Promise<number> =>
      Number(
        new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(await readFile(`/proc/${pid}/${file}`, 'utf8'))?.[1],
      );
    const before = await field('smaps_rollup', 'Pss');
    const { memoryKb } = await vmm.state('work');
    const [sample] = await vmm.stats();
    const after = await field('smaps_rollup', 'Pss');
    // Shared pages' shares move when other processes map or drop them; a stopped agent's own do not.
    const slack = 256;
    for (const kb of [memoryKb, sample?.memoryKb ?? 0]) {
      expect(kb).toBeGreaterThanOrEqual(Math.min(before, after) - slack);
      expect(kb).toBeLessThanOrEqual(Math.max(before, after) + slack);
    }
    // The node binary the agent maps is this test's too: RSS counts it whole, the share does not.
    expect(memoryKb).toBeLessThan(await field('status', 'VmRSS'));
    expect(memoryKb).toBeLessThan(spec('work').memoryMiB * 1024);
  });

  it('gives every start a new domain id and reports a signal it did not send as a crash', async () => {
    const { vmm, events } = await openVmm();
    await vmm.define(spec('work'));
    await vmm.start('work');
    const { pid } = JSON.parse(await readFile(vmm.layout.record('work'), 'utf8')) as { pid: number };
    process.kill(pid, 'SIGSEGV');
    await until(() => events.some((e) => e.type === 'stopped'));
    expect(events.at(-1)).toEqual({ type: 'stopped', name: 'work', reason: 'crashed' });
    await vmm.start('work');
    expect((await vmm.state('work')).xid).toBe(2);
  });

  it('refuses what a process domain cannot do, with VmmError codes', async () => {
    const { vmm } = await openVmm();
    await expect(vmm.start('nowhere')).rejects.toMatchObject({ code: 'no-such-domain' });
    await vmm.define(spec('work'));
    await vmm.start('work');
    await expect(vmm.start('work')).rejects.toMatchObject({ code: 'invalid-state' });
    await expect(vmm.suspend('work')).rejects.toBeInstanceOf(VmmError);
    await expect(vmm.suspend('work')).rejects.toMatchObject({ code: 'unsupported' });
    await expect(vmm.undefine('work')).rejects.toMatchObject({ code: 'invalid-state' });
    await expect(vmm.kill('other')).rejects.toMatchObject({ code: 'invalid-state' });
    expect(vmm.capabilities()).toMatchObject({
      name: 'process',
      virtModes: [],
      suspend: { supported: false },
    });
  });

  it('lets a later instance adopt the domains still running, and kill them', async () => {
    const first = await openVmm();
    await first.vmm.define(spec('work'));
    await first.vmm.start('work');
    await first.vmm.close();
    const second = await openVmm();
    expect(await second.vmm.state('work')).toMatchObject({ state: 'Running', xid: 1 });
    await second.vmm.define(spec('other'));
    await second.vmm.start('other');
    expect((await second.vmm.state('other')).xid).toBe(2);
    await second.vmm.kill('work');
    await until(() => second.events.some((e) => e.type === 'stopped'));
    expect(second.events).toContainEqual({ type: 'stopped', name: 'work', reason: 'destroyed' });
    expect(first.events).toEqual([{ type: 'started', name: 'work' }]);
  });
});
