import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

import { VmmError, backendMac, type CapabilityName, type NetworkLink, type Vmm } from '@odyssey/hal';

import { fail, Unsupported } from '../check.js';
import { agentExec, connectAgent, drainExec, type AgentVchan } from '../hal-agent.js';
import { execCmdline, serviceConnect, triggerRequestId } from '../qrexec-wire.js';
import { HAL_DOMAIN, type HalContext } from './hal-context.js';

/** The second domain of the probes that need two running: a client of HAL_DOMAIN, or its vchan peer. */
export const PROBE_PEER = 'conf-hal-peer';

/**
 * How long a probe waits for a second domain's answer through something declared unsupported. A
 * refused vm-to-vm vchan shows only as an agent waiting to connect (up to its own 120 s), so the
 * probe stops waiting first; one that works answers in well under a second. Running out is "did
 * not work" (no warning), never a failure.
 */
const PROBE_ANSWER_MS = 30_000;

/** Data ports of the probes' execs and vm-to-vm vchan, apart from the vchan checks' (600 on) and the self-stop's (700). */
let nextPort = 800;

/** The client link of PROBE_PEER to HAL_DOMAIN the network probe asks for; the MAC in Qubes' range. */
const PROBE_LINK: NetworkLink = {
  frontendDomain: PROBE_PEER,
  backendDomain: HAL_DOMAIN,
  mac: '00:16:3e:5e:6c:99',
  ip: '10.137.99.2',
};

/** One running domain's agent, reached over dom0's control vchan to it. */
interface Agent {
  readonly xid: number;
  readonly control: AgentVchan;
}

/**
 * What a probe works with: the running HAL_DOMAIN, and PROBE_PEER once a probe asks for it
 * (started once, stopped and undefined by `end`).
 */
export class ProbeTarget {
  #peer: Promise<number> | undefined;
  readonly #agents = new Map<string, Promise<Agent>>();

  constructor(readonly ctx: HalContext) {}

  get vmm(): Vmm {
    return this.ctx.backend.current.vmm;
  }

  /** PROBE_PEER's xid, starting it first; fails when it does not run. */
  peer(): Promise<number> {
    this.#peer ??= (async () => {
      await this.vmm.define(await this.ctx.guest.spec(PROBE_PEER, 'run'));
      await this.vmm.start(PROBE_PEER);
      const rt = await this.vmm.state(PROBE_PEER);
      if (rt.state !== 'Running')
        fail(
          `${PROBE_PEER}, the probes' second domain, is not running after start(): state() says ${rt.state}`,
        );
      return rt.xid;
    })();
    return this.#peer;
  }

  /**
   * Why the guests cannot be asked anything (no transport, or no guest kind the suite boots), or
   * undefined when they can.
   */
  noAgent(): string | undefined {
    if (!this.ctx.backend.current.vchan) return 'createBackend returned no VchanTransport';
    const { kind } = this.ctx.guest;
    return kind instanceof Unsupported ? kind.why : undefined;
  }

  /** The agent of the running domain `name`, connected once. */
  agent(name: string): Promise<Agent> {
    let agent = this.#agents.get(name);
    if (!agent) {
      agent = (async () => {
        const xid = name === PROBE_PEER ? await this.peer() : (await this.vmm.state(name)).xid;
        return { xid, control: await connectAgent(this.#transport(), xid) };
      })();
      this.#agents.set(name, agent);
    }
    return agent;
  }

  /** Asks the agent of `name` to run `command`, and reads the exec's data vchan to dom0. */
  async exec(name: string, command: string): Promise<AgentVchan> {
    const { xid, control } = await this.agent(name);
    return agentExec(this.#transport(), xid, control.vchan, nextPort++, command);
  }

  /** A data port no exec of the probes uses. */
  port(): number {
    return nextPort++;
  }

  #transport() {
    const transport = this.ctx.backend.current.vchan;
    if (!transport) throw new Error('createBackend returned no VchanTransport');
    return transport;
  }

  /** Closes the agents' control vchans, and takes PROBE_PEER away if a probe started it. */
  async end(): Promise<void> {
    for (const agent of this.#agents.values()) (await agent.catch(() => undefined))?.control.vchan.destroy();
    this.#agents.clear();
    if (this.#peer === undefined) return;
    this.#peer = undefined;
    await this.vmm.kill(PROBE_PEER).catch(() => undefined);
    await this.vmm.undefine(PROBE_PEER).catch(() => undefined);
  }
}

/**
 * How a capability declared unsupported is tried: `worked` when the call did what the capability
 * promises (and has been undone), false when it was refused. A capability the HAL gives no call
 * of its own, or that the suite cannot look at here, is untried with the reason (a string), which
 * the report repeats so nobody reads "no warning" as "checked".
 */
type Attempt =
  { readonly tried: (on: ProbeTarget) => Promise<boolean | string> } | { readonly untried: string };

/**
 * pause() and suspend() have an undo, and the HAL says how to refuse them: a VmmError with code
 * 'unsupported'; anything else is a failure, since core tells the user from that code.
 */
function lifecycle(op: 'pause' | 'suspend', undo: 'unpause' | 'resume'): Attempt {
  return {
    tried: async ({ vmm }) => {
      try {
        await vmm[op](HAL_DOMAIN);
      } catch (e) {
        if (e instanceof VmmError && e.code === 'unsupported') return false;
        fail(
          `${op}() is declared unsupported, so it must reject with VmmError code 'unsupported'; got ${String(e)}`,
        );
      }
      // Undone, so the checks after this one find the domain running.
      await vmm[undo](HAL_DOMAIN);
      return true;
    },
  };
}

/** The MAC addresses of the network interfaces the running domain `name` sees, as its guest lists them. */
async function interfaceMacs(on: ProbeTarget, name: string): Promise<string[]> {
  const { reader } = await on.exec(name, 'cat /sys/class/net/*/address');
  const { stdout } = await drainExec(reader);
  return stdout.toString('latin1').split('\n').filter(Boolean);
}

/**
 * `network`: the link of PROBE_PEER to HAL_DOMAIN as its netvm, attached as core attaches one. It
 * works when each guest then sees its side: the netvm an interface whose MAC is backendMac(ip),
 * the client one with its own MAC (hal/README.md, Network links). Detached again after.
 */
async function tryNetwork(on: ProbeTarget): Promise<boolean | string> {
  const { vmm } = on;
  if (!vmm.attachLink) return false;
  await on.peer();
  try {
    await vmm.attachLink(PROBE_LINK);
  } catch {
    // Optional methods have no prescribed refusal: any rejection is one.
    return false;
  }
  try {
    const noAgent = on.noAgent();
    if (noAgent)
      return `attachLink() resolved, but no guest can be asked what interfaces it sees: ${noAgent}`;
    const netvm = await interfaceMacs(on, HAL_DOMAIN);
    const client = await interfaceMacs(on, PROBE_PEER);
    return netvm.includes(backendMac(PROBE_LINK.ip)) && client.includes(PROBE_LINK.mac);
  } finally {
    await vmm.detachLink?.(PROBE_LINK).catch(() => undefined);
  }
}

const VM_TO_VM_MARK = 'odyssey-vm-to-vm-probe';

/**
 * `vmToVmVchan`: a call from HAL_DOMAIN to PROBE_PEER whose data goes over a vchan between the
 * two, as qrexec sets one up (the suite plays dom0's daemon, and never imports it): HAL_DOMAIN's
 * qrexec-client-vm asks its agent, which asks dom0; dom0 tells it to serve the data vchan for the
 * peer (MSG_SERVICE_CONNECT) and tells the peer's agent to connect to it and run a command there
 * (MSG_EXEC_CMDLINE naming HAL_DOMAIN's xid). It works when what the command printed in the peer
 * comes back out of qrexec-client-vm in HAL_DOMAIN.
 */
async function tryVmToVm(on: ProbeTarget): Promise<boolean | string> {
  const noAgent = on.noAgent();
  if (noAgent) return `a vchan between two guests needs their agents: ${noAgent}`;
  const { clientVm } = on.ctx.guest;
  if (clientVm === undefined) return 'the suite runs no qrexec-client-vm in this kind of guest';
  const source = await on.agent(HAL_DOMAIN);
  const target = await on.agent(PROBE_PEER);
  const call = await on.exec(HAL_DOMAIN, `${clientVm} ${PROBE_PEER} test.OdysseyProbe`);
  try {
    // qrexec-client-vm's output and exit, however its call goes (it exits at once when it cannot ask).
    const ended = drainExec(call.reader);
    const answering = (async () => {
      let requestId: Buffer | undefined;
      while (requestId === undefined) requestId = triggerRequestId(await source.control.reader.next());
      const port = on.port();
      source.control.vchan.write(serviceConnect(target.xid, port, requestId));
      target.control.vchan.write(execCmdline(port, `user:echo ${VM_TO_VM_MARK}`, source.xid));
    })();
    // A control vchan closed under it (the probe is over) is no error of the backend's.
    answering.catch(() => undefined);
    const answer = await within(ended, PROBE_ANSWER_MS);
    return answer?.code === 0 && answer.stdout.toString('latin1') === `${VM_TO_VM_MARK}\n`;
  } finally {
    call.vchan.destroy();
  }
}

/** What `promise` gives within `ms`, or undefined after. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  const timer = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, undefined, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}

const NO_METHOD = 'the HAL has no Vmm method for it';

export const DECLARED_UNSUPPORTED_ATTEMPTS: Readonly<Record<CapabilityName, Attempt>> = {
  pause: lifecycle('pause', 'unpause'),
  suspend: lifecycle('suspend', 'resume'),
  // stats() has a value without the capability (core lists memory from it); what the capability
  // adds, and what hal.stats measures, is the running domain's CPU time.
  stats: {
    tried: async ({ vmm }) => {
      const listed = await vmm.stats().catch(() => []);
      return listed.some((s) => s.name === HAL_DOMAIN && s.cpuTimeNs > 0);
    },
  },
  console: {
    tried: async ({ vmm }) => {
      if (!vmm.consolePath) return false;
      const path = await vmm.consolePath(HAL_DOMAIN).catch(() => undefined);
      return path !== undefined && (await stat(path).catch(() => undefined))?.isCharacterDevice() === true;
    },
  },
  network: { tried: tryNetwork },
  vmToVmVchan: { tried: tryVmToVm },
  blockDevices: { untried: NO_METHOD },
  pciDevices: { untried: NO_METHOD },
  usbDevices: { untried: NO_METHOD },
};
