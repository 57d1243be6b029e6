import { VmmError, type Backend, type CapabilityName, type Vmm, type VmmCapabilities } from '@odyssey/hal';

import { expectEqual, fail, Warning, type Check } from '../check.js';
import { watchVmm } from '../vmm-events.js';
import { HAL_DOMAIN, type HalContext } from './hal-context.js';
import { DECLARED_UNSUPPORTED_ATTEMPTS, PROBE_PEER, ProbeTarget } from './hal-declared-unsupported.js';
import { closeHalVchans, halAgentAnswers } from './hal-vchan.js';

/** Domains that stop on their own (a fresh one each, so the first's state cannot mask it). */
const SELF_STOPPING = { 'power-off': 'conf-hal-poweroff', crash: 'conf-hal-crash' } as const;

const hal = (
  id: string,
  run: (ctx: HalContext) => Promise<void>,
  needs?: readonly CapabilityName[],
): Check<HalContext> => ({ id: `hal.${id}`, category: 'hal', run, ...(needs ? { needs } : {}) });

const vmmOf = (ctx: HalContext): Vmm => ctx.backend.current.vmm;

/** The domain must run before an operation on it is judged; fails at once, naming what state() says. */
async function requireRunning(vmm: Vmm, before: string) {
  const rt = await vmm.state(HAL_DOMAIN);
  if (rt.state !== 'Running') fail(`${HAL_DOMAIN} is not running before ${before}: state() says ${rt.state}`);
  return rt;
}

async function expectState(vmm: Vmm, name: string, expected: string, after: string): Promise<number> {
  const rt = await vmm.state(name);
  expectEqual(rt.state, expected, `state() of ${name} after ${after}`);
  return rt.xid;
}

/** Defines and starts `name`, and checks start() is true: state() Running with an xid, events() `started`. */
async function startDomain(ctx: HalContext, name: string, behaviour: 'run' | 'power-off' | 'crash') {
  const vmm = vmmOf(ctx);
  const events = watchVmm(vmm);
  try {
    await vmm.define(await ctx.guest.spec(name, behaviour));
    await vmm.start(name);
    if (behaviour === 'run') await expectState(vmm, name, 'Running', 'start()');
    await events.next((ev) => ev.type === 'started' && ev.name === name, `started for ${name}`);
  } finally {
    events.stop();
  }
}

/** Runs `action`, checks the state it leads to, and waits for the event it must cause. */
async function expectEvent(
  vmm: Vmm,
  action: () => Promise<unknown>,
  state: { name: string; is: string; after: string },
  matches: (ev: { type: string; name: string; reason?: string }) => boolean,
  what: string,
): Promise<void> {
  const events = watchVmm(vmm);
  try {
    await action();
    // What state() says fails at once; only then is the event waited for.
    await expectState(vmm, state.name, state.is, state.after);
    await events.next(matches, what);
  } finally {
    events.stop();
  }
}

/** stats()' CPU time of `name`; fails when stats() does not list it. */
async function cpuTimeOf(vmm: Vmm, name: string): Promise<number> {
  const entry = (await vmm.stats()).find((s) => s.name === name);
  if (!entry) fail(`stats() does not list the running domain ${name}`);
  return entry.cpuTimeNs;
}

/** CPU time of HAL_DOMAIN right after it started; the vchan checks in between give it work. */
let cpuAtStart: number | undefined;

/** Polls stats() until `name`'s CPU time has grown past `first`; fails when it never does. */
async function cpuTimeGrows(vmm: Vmm, name: string, first: number): Promise<void> {
  const sample = () => cpuTimeOf(vmm, name);
  const deadline = Date.now() + 60_000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = await sample();
    if (now > first) return;
    if (Date.now() > deadline) fail(`stats() CPU time of ${name} stayed at ${first} ns for 60 s`);
  }
}

export const halStartCheck: Check<HalContext> = hal('start', async (ctx) => {
  await startDomain(ctx, HAL_DOMAIN, 'run');
  const xid = await expectState(vmmOf(ctx), HAL_DOMAIN, 'Running', 'start()');
  if (xid <= 0) fail(`state() of a running domain must carry its hypervisor id (> 0), got xid ${xid}`);
  cpuAtStart = ctx.backend.capabilities.stats.supported ? await cpuTimeOf(vmmOf(ctx), HAL_DOMAIN) : undefined;
});

/** The checks after start (and after the vchan checks, which run on the started domain). */
export const halLifecycleChecks: readonly Check<HalContext>[] = [
  hal(
    'stats',
    async (ctx) => {
      const vmm = vmmOf(ctx);
      await requireRunning(vmm, 'stats()');
      await cpuTimeGrows(vmm, HAL_DOMAIN, cpuAtStart ?? (await cpuTimeOf(vmm, HAL_DOMAIN)));
    },
    ['stats'],
  ),
  hal(
    'pause-unpause',
    async (ctx) => {
      const vmm = vmmOf(ctx);
      const is = (type: string) => (ev: { type: string; name: string }) =>
        ev.type === type && ev.name === HAL_DOMAIN;
      await requireRunning(vmm, 'pause()');
      const at = (state: string, after: string) => ({ name: HAL_DOMAIN, is: state, after });
      await expectEvent(vmm, () => vmm.pause(HAL_DOMAIN), at('Paused', 'pause()'), is('paused'), 'paused');
      await expectEvent(
        vmm,
        () => vmm.unpause(HAL_DOMAIN),
        at('Running', 'unpause()'),
        is('unpaused'),
        'unpaused',
      );
    },
    ['pause'],
  ),
  hal(
    'suspend-resume',
    async (ctx) => {
      const vmm = vmmOf(ctx);
      const is = (type: string) => (ev: { type: string; name: string }) =>
        ev.type === type && ev.name === HAL_DOMAIN;
      await requireRunning(vmm, 'suspend()');
      const at = (state: string, after: string) => ({ name: HAL_DOMAIN, is: state, after });
      await expectEvent(
        vmm,
        () => vmm.suspend(HAL_DOMAIN),
        at('Suspended', 'suspend()'),
        is('suspended'),
        'suspended',
      );
      await expectEvent(
        vmm,
        () => vmm.resume(HAL_DOMAIN),
        at('Running', 'resume()'),
        is('resumed'),
        'resumed',
      );
    },
    ['suspend'],
  ),
  // What the backend declares it cannot do must be refused as such; doing it anyway is a warning.
  hal('declared-unsupported-refused', async (ctx) => {
    const caps: VmmCapabilities = ctx.backend.capabilities;
    await requireRunning(vmmOf(ctx), 'trying what is declared unsupported');
    // The probes talk to the agent themselves; it serves one control vchan at a time.
    closeHalVchans();
    const target = new ProbeTarget(ctx);
    const worked: string[] = [];
    const untried: string[] = [];
    try {
      for (const name of Object.keys(DECLARED_UNSUPPORTED_ATTEMPTS) as CapabilityName[]) {
        if (caps[name]?.supported === true) continue;
        const attempt = DECLARED_UNSUPPORTED_ATTEMPTS[name];
        const outcome = 'untried' in attempt ? attempt.untried : await attempt.tried(target);
        if (typeof outcome === 'string') untried.push(`${name} (${outcome})`);
        else if (outcome) worked.push(name);
      }
    } finally {
      await target.end();
    }
    if (worked.length > 0)
      throw new Warning(
        `declared unsupported but worked: ${worked.join(', ')}` +
          (untried.length > 0 ? `; not tried: ${untried.join('; ')}` : ''),
      );
  }),
  // A restarted daemon opens a fresh instance: what it finds of a running domain is what the
  // backend declares close() does to it, and both answers are checked as they are declared.
  hal('close-reopen', async (ctx) => {
    const declared: unknown = ctx.backend.capabilities.domainsOnClose;
    if (declared !== 'survive' && declared !== 'stop')
      fail(
        `capabilities().domainsOnClose must say what close() does to running domains, 'survive' or 'stop'; got ${JSON.stringify(declared)}`,
      );
    const before = await requireRunning(vmmOf(ctx), 'close()');
    closeHalVchans();
    const closing = watchVmm(vmmOf(ctx));
    try {
      const reopened: Backend = await ctx.backend.reload();
      const after = await reopened.vmm.state(HAL_DOMAIN);
      const is = `domainsOnClose is '${declared}'`;
      expectEqual(
        { state: after.state, xid: after.xid },
        declared === 'survive' ? { state: before.state, xid: before.xid } : { state: 'Halted', xid: -1 },
        `${is}: state() of ${HAL_DOMAIN} from a fresh instance after close() and open()`,
      );
      if (ctx.backend.capabilities.stats.supported) {
        const listed = (await reopened.vmm.stats()).some((s) => s.name === HAL_DOMAIN);
        if (listed !== (declared === 'survive'))
          fail(
            `${is}, yet stats() of the fresh instance ${listed ? 'lists' : 'does not list'} ${HAL_DOMAIN}`,
          );
      }
      const told = (await closing.rest('close()')).find(
        (ev) => ev.type === 'stopped' && ev.name === HAL_DOMAIN,
      );
      if (declared === 'survive') {
        if (told) fail(`${is}, yet events() of the closed instance said ${HAL_DOMAIN} stopped`);
        await halAgentAnswers(ctx).catch((e: unknown) =>
          fail(
            `${is}: the agent of ${HAL_DOMAIN} does not answer through the fresh instance's vchan: ${e instanceof Error ? e.message : String(e)}`,
          ),
        );
        return;
      }
      if (!told)
        fail(
          `${is}: events() of the closed instance ended without stopped for ${HAL_DOMAIN}, which close() stopped`,
        );
      // The checks after this one stop a running domain: it starts again, through the fresh instance.
      await startDomain(ctx, HAL_DOMAIN, 'run');
    } finally {
      closing.stop();
    }
  }),
  hal('shutdown', async (ctx) => {
    const vmm = vmmOf(ctx);
    await requireRunning(vmm, 'shutdown()');
    closeHalVchans();
    await expectEvent(
      vmm,
      () => vmm.shutdown(HAL_DOMAIN, { timeoutMs: 120_000 }),
      { name: HAL_DOMAIN, is: 'Halted', after: 'shutdown()' },
      (ev) => ev.type === 'stopped' && ev.name === HAL_DOMAIN && ev.reason === 'shutdown',
      'stopped (reason shutdown)',
    );
    expectEqual((await vmm.state(HAL_DOMAIN)).xid, -1, `xid of ${HAL_DOMAIN} once halted`);
  }),
  hal('kill', async (ctx) => {
    await startDomain(ctx, HAL_DOMAIN, 'run');
    const vmm = vmmOf(ctx);
    await expectEvent(
      vmm,
      () => vmm.kill(HAL_DOMAIN),
      { name: HAL_DOMAIN, is: 'Halted', after: 'kill()' },
      (ev) => ev.type === 'stopped' && ev.name === HAL_DOMAIN && ev.reason === 'destroyed',
      'stopped (reason destroyed)',
    );
  }),
  ...(['power-off', 'crash'] as const).map((how) =>
    hal(`guest-${how}`, async (ctx) => {
      const name = SELF_STOPPING[how];
      const vmm = vmmOf(ctx);
      const events = watchVmm(vmm);
      try {
        const { selfStop } = ctx.guest;
        if (selfStop.by === 'none') throw selfStop.why;
        // A guest booted to stop by itself may be gone before start() returns: only events() tells.
        await vmm.define(await ctx.guest.spec(name, selfStop.by === 'boot' ? how : 'run'));
        await vmm.start(name);
        if (selfStop.by === 'act')
          await selfStop.act(name, await expectState(vmm, name, 'Running', 'start()'), how);
        const stopped = await events.next(
          (ev) => ev.type === 'stopped' && ev.name === name,
          `stopped for ${name}, which ${how === 'crash' ? 'crashed' : 'powered off'} by itself`,
        );
        if (how === 'power-off' && stopped.type === 'stopped' && stopped.reason !== 'shutdown')
          fail(`a guest that powered off is stopped with reason shutdown, got ${stopped.reason}`);
        await expectState(vmm, name, 'Halted', `the guest's own ${how}`);
        // Seen and halted is what the daemon needs; a crash told as a clean stop misleads its users.
        if (how === 'crash' && stopped.type === 'stopped' && stopped.reason === 'shutdown')
          throw new Warning(`a guest that crashed (${selfStop.crash}) was reported as stopped: shutdown`);
      } finally {
        events.stop();
        await vmm.undefine(name).catch(() => undefined);
      }
    }),
  ),
  hal('undefine', async (ctx) => {
    const vmm = vmmOf(ctx);
    await vmm.undefine(HAL_DOMAIN);
    try {
      await vmm.start(HAL_DOMAIN);
    } catch (e) {
      if (e instanceof VmmError && e.code === 'no-such-domain') return;
      fail(
        `start() of an undefined domain must reject with VmmError code 'no-such-domain'; got ${String(e)}`,
      );
    }
    await vmm.kill(HAL_DOMAIN).catch(() => undefined);
    fail('start() of an undefined domain succeeded');
  }),
];

/** Leaves nothing of the hal checks behind, whatever failed half-way. */
export async function cleanUpHal(vmm: Vmm): Promise<void> {
  closeHalVchans();
  for (const name of [HAL_DOMAIN, PROBE_PEER, ...Object.values(SELF_STOPPING)]) {
    if ((await vmm.state(name).catch(() => null))?.state !== 'Halted')
      await vmm.kill(name).catch(() => undefined);
    await vmm.undefine(name).catch(() => undefined);
  }
}
