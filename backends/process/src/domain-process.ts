import { spawn } from 'node:child_process';
import { processArgv, processStat } from './proc.js';

/** How a domain's process ended; code and signal are null when it was not our child (status unknown). */
export interface DomainExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** What is written next to a running domain so that a restarted daemon can adopt it. */
export interface DomainRecord {
  readonly name: string;
  readonly xid: number;
  readonly pid: number;
  readonly memoryMaxKb: number;
  readonly vcpus: number;
}

export interface SpawnOptions {
  readonly program: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** File descriptor that receives the domain's stdout and stderr (its console). */
  readonly console: number;
}

/** How often an adopted process (not our child, so no exit event) is checked for life. */
const ADOPTED_POLL_MS = 250;

/**
 * One running domain: the agent process, leader of its own process group so
 * that signals reach the services it started as well. It outlives the
 * daemon (detached); a later daemon adopts it from its DomainRecord.
 */
export class DomainProcess {
  /** The terminating signal we sent last, to tell our stop from a crash. */
  sentSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<DomainExit>;
  #stopWatching: () => void = () => undefined;

  private constructor(
    readonly record: DomainRecord,
    watch: (done: (exit: DomainExit) => void) => () => void,
  ) {
    this.exited = new Promise((resolve) => (this.#stopWatching = watch(resolve)));
  }

  static spawn(options: SpawnOptions, record: Omit<DomainRecord, 'pid'>): Promise<DomainProcess> {
    return new Promise((resolve, reject) => {
      const child = spawn(options.program, options.args, {
        detached: true,
        stdio: ['ignore', options.console, options.console],
        env: options.env,
        cwd: options.cwd,
      });
      child.once('error', reject);
      child.once('spawn', () => {
        child.off('error', reject);
        // The daemon may exit while the domain runs on, as a VM outlives qubesd.
        child.unref();
        const pid = child.pid as number;
        resolve(
          new DomainProcess({ ...record, pid }, (done) => {
            const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
              done({ code, signal });
            child.once('exit', onExit);
            return () => child.off('exit', onExit);
          }),
        );
      });
    });
  }

  /** Takes over a domain a previous daemon started, if its process still runs the same program. */
  static async adopt(record: DomainRecord, program: string): Promise<DomainProcess | undefined> {
    const argv = await processArgv(record.pid);
    const sample = await processStat(record.pid);
    if (!argv || !sample || sample.state === 'Z') return undefined;
    const domainId = argv[argv.indexOf('--domain-id') + 1];
    if (!argv.includes(program) || domainId !== String(record.xid)) return undefined;
    return new DomainProcess(record, (done) => {
      const timer = setInterval(() => {
        void processStat(record.pid).then((s) => {
          if (s && s.state !== 'Z') return;
          clearInterval(timer);
          done({ code: null, signal: null });
        });
      }, ADOPTED_POLL_MS);
      timer.unref();
      return () => clearInterval(timer);
    });
  }

  get pid(): number {
    return this.record.pid;
  }

  /** Signals the whole process group; false when it is already gone. */
  signal(signal: NodeJS.Signals): boolean {
    if (signal === 'SIGTERM' || signal === 'SIGKILL') this.sentSignal = signal;
    try {
      process.kill(-this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Stops reporting the exit (the daemon lets go of the domain, which keeps running). */
  release(): void {
    this.#stopWatching();
  }
}
