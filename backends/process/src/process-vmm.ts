import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  EventHub,
  VmmError,
  supported,
  unsupported,
  type BackendContext,
  type DomainRuntime,
  type DomainSpec,
  type DomainStats,
  type PowerState,
  type ShutdownOptions,
  type Vmm,
  type VmmCapabilities,
  type VmmEvent,
} from '@odyssey/hal';
import { NO_SUSPEND, PROCESS_CAPABILITIES } from './capabilities.js';
import { closeConsolePty, consolePtysAvailable, openConsolePty, type ConsoleFiles } from './console-pty.js';
import { DomainProcess, type DomainExit, type DomainRecord } from './domain-process.js';
import { ProcessLayout } from './layout.js';
import { processStat, sampleProcess } from './proc.js';

export interface ProcessVmmOptions extends BackendContext {
  /** The agent's entry point; default the built `agent-main.js` of @odyssey/agent. */
  readonly agentMain?: string;
  /** How long start() waits for the agent to open its socket, ms (default 10 s). */
  readonly startTimeoutMs?: number;
}

type StopReason = Extract<VmmEvent, { type: 'stopped' }>['reason'];

const READY_POLL_MS = 20;

/**
 * Upstream's qubes.VMShell (core-agent-linux): a shell reading its commands from the call's stdin,
 * which is how qvm-run sends a command and then the command's own input. bash, because it reads a
 * pipe a byte at a time and so leaves the input after the command line to the command (dash reads
 * ahead). Written once, so a host may replace it.
 */
const VM_SHELL = {
  name: 'qubes.VMShell',
  script: '#!/bin/sh\ncommand -v bash >/dev/null && exec bash\nexec /bin/sh\n',
};

/** The agent program next to @odyssey/agent's entry point, resolved as the daemon resolves packages. */
export function defaultAgentMain(): string {
  return join(dirname(fileURLToPath(import.meta.resolve('@odyssey/agent'))), 'agent-main.js');
}

/**
 * The HAL over local processes: a domain is `odyssey-qrexec-agent` running
 * with its own domain id (xid), agent socket and service directory, on the
 * vchan socket directory it shares with dom0 and the other domains.
 */
export class ProcessVmm implements Vmm {
  readonly layout: ProcessLayout;
  readonly agentMain: string;
  private readonly specs = new Map<string, DomainSpec>();
  private readonly running = new Map<string, DomainProcess>();
  private readonly paused = new Set<string>();
  private readonly lastCpu = new Map<string, { cpuTimeNs: number; atNs: bigint }>();
  private readonly hub = new EventHub();
  private nextXid = 1;

  /** Consoles need socat to hold their ptys; probed once. */
  private readonly consoles = consolePtysAvailable();

  constructor(private readonly options: ProcessVmmOptions) {
    this.layout = new ProcessLayout(options.runtimeDir);
    this.agentMain = options.agentMain ?? defaultAgentMain();
  }

  capabilities(): VmmCapabilities {
    return {
      ...PROCESS_CAPABILITIES,
      console: this.consoles
        ? supported
        : unsupported('socat, which holds the console ptys, is not installed'),
    };
  }

  /** The slave of the pty that carries what the domain prints (its console log, as it grows). */
  async consolePath(name: string): Promise<string> {
    this.runningDomain(name);
    if (!this.consoles) throw new VmmError('unsupported', `${name} has no console: socat is not installed`);
    try {
      return await realpath(this.layout.consolePty(name));
    } catch (error) {
      throw new VmmError('failed', `the console pty of ${name} is gone: ${(error as Error).message}`);
    }
  }

  private consoleFiles(name: string): ConsoleFiles {
    return {
      log: this.layout.consoleLog(name),
      link: this.layout.consolePty(name),
      pidFile: this.layout.consolePid(name),
    };
  }

  /** Prepares the directories and adopts the domains a previous daemon left running. */
  async open(): Promise<void> {
    await mkdir(this.layout.vchanDir, { recursive: true });
    await mkdir(this.layout.domainsDir, { recursive: true });
    await mkdir(this.layout.sharedServiceDir, { recursive: true });
    await writeFile(join(this.layout.sharedServiceDir, VM_SHELL.name), VM_SHELL.script, {
      mode: 0o755,
      flag: 'wx',
    }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    for (const name of await readdir(this.layout.domainsDir)) {
      const record = await readRecord(this.layout.record(name));
      if (!record) continue;
      const adopted = await DomainProcess.adopt(record, this.agentMain);
      if (!adopted) {
        await this.forget(record);
        continue;
      }
      this.nextXid = Math.max(this.nextXid, record.xid + 1);
      if ((await processStat(record.pid))?.state === 'T') this.paused.add(name);
      this.track(name, adopted);
      this.options.log('info', `adopted running domain ${name} (xid ${record.xid}, pid ${record.pid})`);
    }
  }

  /** Lets go of the domains without stopping them: a later open() adopts them again. */
  async close(): Promise<void> {
    for (const domain of this.running.values()) domain.release();
    this.running.clear();
    this.hub.close();
  }

  events(): AsyncIterable<VmmEvent> {
    return this.hub.subscribe();
  }

  async define(spec: DomainSpec): Promise<void> {
    this.specs.set(spec.name, spec);
  }

  async undefine(name: string): Promise<void> {
    if (this.running.has(name)) throw new VmmError('invalid-state', `${name} is running`);
    this.specs.delete(name);
    await rm(this.layout.domainDir(name), { recursive: true, force: true });
  }

  async start(name: string): Promise<void> {
    const spec = this.specs.get(name);
    if (!spec) throw new VmmError('no-such-domain', `${name} is not defined`);
    if (this.running.has(name)) throw new VmmError('invalid-state', `${name} is already running`);
    const xid = this.nextXid++;
    const dir = this.layout.domainDir(name);
    await mkdir(this.layout.serviceDir(name), { recursive: true });
    await rm(this.layout.agentSocket(name), { force: true });
    const consoleFd = openSync(this.layout.consoleLog(name), 'w');
    let domain: DomainProcess;
    try {
      domain = await DomainProcess.spawn(
        {
          program: process.execPath,
          args: [
            this.agentMain,
            '--domain-id',
            String(xid),
            '--vchan-dir',
            this.layout.vchanDir,
            '--agent-socket',
            this.layout.agentSocket(name),
            '--service-dir',
            this.layout.serviceDir(name),
            this.layout.sharedServiceDir,
            '--qubesdb-socket',
            this.layout.qubesdbSocket(name),
          ],
          // What qrexec-client-vm and the services in the domain need to find their agent.
          env: {
            ...process.env,
            VCHAN_DOMAIN: String(xid),
            VCHAN_SOCKET_DIR: this.layout.vchanDir,
            QREXEC_AGENT_SOCKET: this.layout.agentSocket(name),
            QUBESDB_SOCKET: this.layout.qubesdbSocket(name),
          },
          cwd: dir,
          console: consoleFd,
        },
        { name, xid, memoryMaxKb: maxMemoryKb(spec), vcpus: spec.vcpus },
      );
    } catch (error) {
      throw new VmmError('failed', `cannot start ${name}: ${(error as Error).message}`, { cause: error });
    } finally {
      closeSync(consoleFd);
    }
    await writeFile(this.layout.record(name), JSON.stringify(domain.record));
    this.track(name, domain);
    await this.waitReady(name, domain);
    if (this.consoles) {
      await openConsolePty(this.consoleFiles(name), domain.pid).catch((error: unknown) =>
        this.options.log('warn', `no console for ${name}: ${(error as Error).message}`),
      );
    }
    this.hub.publish({ type: 'started', name });
  }

  async shutdown(name: string, options: ShutdownOptions): Promise<void> {
    const domain = this.running.get(name);
    if (!domain) return;
    domain.signal('SIGTERM');
    // A stopped process only acts on SIGTERM once it runs again.
    if (this.paused.has(name)) domain.signal('SIGCONT');
    if (await exitsWithin(domain, options.timeoutMs)) return;
    throw new VmmError('timeout', `${name} did not shut down within ${options.timeoutMs} ms`);
  }

  async kill(name: string): Promise<void> {
    const domain = this.runningDomain(name);
    domain.signal('SIGKILL');
    await domain.exited;
  }

  async pause(name: string): Promise<void> {
    const domain = this.runningDomain(name);
    if (this.paused.has(name)) throw new VmmError('invalid-state', `${name} is already paused`);
    domain.signal('SIGSTOP');
    this.paused.add(name);
    this.hub.publish({ type: 'paused', name });
  }

  async unpause(name: string): Promise<void> {
    const domain = this.runningDomain(name);
    if (!this.paused.has(name)) throw new VmmError('invalid-state', `${name} is not paused`);
    domain.signal('SIGCONT');
    this.paused.delete(name);
    this.hub.publish({ type: 'unpaused', name });
  }

  async suspend(name: string): Promise<void> {
    throw unsupportedSuspend(name);
  }

  async resume(name: string): Promise<void> {
    throw unsupportedSuspend(name);
  }

  async state(name: string): Promise<DomainRuntime> {
    const domain = this.running.get(name);
    const sample = domain && (await sampleProcess(domain.pid));
    if (!domain || !sample) return { state: 'Halted', xid: -1, memoryKb: 0, memoryMaxKb: 0, cpuTimeNs: 0 };
    return {
      state: this.powerState(name),
      xid: domain.record.xid,
      memoryKb: sample.pssKb,
      memoryMaxKb: domain.record.memoryMaxKb,
      cpuTimeNs: sample.cpuTimeNs,
    };
  }

  async stats(): Promise<readonly DomainStats[]> {
    const stats: DomainStats[] = [];
    for (const [name, domain] of this.running) {
      const sample = await sampleProcess(domain.pid);
      if (!sample) continue;
      stats.push({
        name,
        memoryKb: sample.pssKb,
        memoryMaxKb: domain.record.memoryMaxKb,
        cpuTimeNs: sample.cpuTimeNs,
        cpuUsagePercent: this.cpuUsage(`${name}:${domain.pid}`, sample.cpuTimeNs, domain.record.vcpus),
        onlineVcpus: domain.record.vcpus,
      });
    }
    const live = new Set([...this.running].map(([name, d]) => `${name}:${d.pid}`));
    for (const key of this.lastCpu.keys()) if (!live.has(key)) this.lastCpu.delete(key);
    return stats;
  }

  private powerState(name: string): PowerState {
    return this.paused.has(name) ? 'Paused' : 'Running';
  }

  private runningDomain(name: string): DomainProcess {
    const domain = this.running.get(name);
    if (!domain) throw new VmmError('invalid-state', `${name} is not running`);
    return domain;
  }

  private track(name: string, domain: DomainProcess): void {
    this.running.set(name, domain);
    void domain.exited.then((exit) => this.onExit(name, domain, exit));
  }

  private async onExit(name: string, domain: DomainProcess, exit: DomainExit): Promise<void> {
    if (this.running.get(name) !== domain) return;
    this.running.delete(name);
    this.paused.delete(name);
    await this.forget(domain.record);
    const reason = stopReason(domain, exit);
    if (reason === 'crashed' || reason === 'failed') {
      this.options.log(
        'warn',
        `domain ${name} ended on its own (exit code ${exit.code}, signal ${exit.signal})`,
      );
    }
    this.hub.publish({ type: 'stopped', name, reason });
  }

  /** Removes what a stopped domain leaves behind: its console, record, agent socket and vchan sockets. */
  private async forget(record: DomainRecord): Promise<void> {
    await closeConsolePty(this.consoleFiles(record.name));
    await rm(this.layout.record(record.name), { force: true });
    await rm(this.layout.agentSocket(record.name), { force: true });
    const xid = String(record.xid);
    for (const file of await readdir(this.layout.vchanDir).catch(() => [])) {
      const [, server, client] = file.split('.');
      if (server === xid || client === xid) await rm(join(this.layout.vchanDir, file), { force: true });
    }
  }

  /** The domain runs once its agent accepts qrexec-client-vm; a domain that dies before that failed to start. */
  private async waitReady(name: string, domain: DomainProcess): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10_000);
    let ended = false;
    void domain.exited.then(() => (ended = true));
    while (!(await isSocket(this.layout.agentSocket(name)))) {
      if (ended)
        throw new VmmError('failed', `${name} exited during start; see ${this.layout.consoleLog(name)}`);
      if (Date.now() > deadline) {
        domain.signal('SIGKILL');
        throw new VmmError('timeout', `the agent of ${name} did not start in time`);
      }
      await sleep(READY_POLL_MS);
    }
  }

  private cpuUsage(key: string, cpuTimeNs: number, vcpus: number): number {
    const now = process.hrtime.bigint();
    const previous = this.lastCpu.get(key);
    this.lastCpu.set(key, { cpuTimeNs, atNs: now });
    if (!previous || now <= previous.atNs || vcpus <= 0) return 0;
    const busy = (cpuTimeNs - previous.cpuTimeNs) / Number(now - previous.atNs);
    return Math.max(0, Math.min(100, (busy / vcpus) * 100));
  }
}

/** Our SIGTERM is a shutdown and our SIGKILL a destroy; a signal we did not send is a crash. */
function stopReason(domain: DomainProcess, exit: DomainExit): StopReason {
  if (domain.sentSignal === 'SIGKILL') return 'destroyed';
  if (domain.sentSignal === 'SIGTERM') return 'shutdown';
  if (exit.signal) return 'crashed';
  if (exit.code === null) return 'unknown';
  return exit.code === 0 ? 'shutdown' : 'failed';
}

function maxMemoryKb(spec: DomainSpec): number {
  return Math.max(spec.memoryMiB, spec.maxMemoryMiB) * 1024;
}

function unsupportedSuspend(name: string): VmmError {
  return new VmmError('unsupported', `cannot suspend or resume ${name}: ${NO_SUSPEND}`);
}

async function exitsWithin(domain: DomainProcess, timeoutMs: number): Promise<boolean> {
  const timeout = sleep(timeoutMs, false, { ref: false });
  return Promise.race([domain.exited.then(() => true), timeout]);
}

async function isSocket(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isSocket() ?? false;
}

async function readRecord(path: string): Promise<DomainRecord | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as DomainRecord;
  } catch {
    return undefined;
  }
}
