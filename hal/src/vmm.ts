import type { VchanTransport } from './vchan.js';
import type { VmmCapabilities } from './capabilities.js';
import type { DomainSpec, NetworkLink } from './domain-spec.js';

/** Power states as Qubes names them (admin.vm.List, admin.vm.CurrentState). */
export type PowerState =
  'Halted' | 'Transient' | 'Running' | 'Paused' | 'Suspended' | 'Halting' | 'Dying' | 'Crashed' | 'NA';

export interface DomainStats {
  readonly name: string;
  /** What the host pays for the domain now, KiB (see DomainRuntime.memoryKb). */
  readonly memoryKb: number;
  /** Maximum memory the domain may have, KiB. */
  readonly memoryMaxKb: number;
  /** Total CPU time consumed, nanoseconds. */
  readonly cpuTimeNs: number;
  /** CPU usage since the previous sample, percent of one host CPU times vcpus. */
  readonly cpuUsagePercent: number;
  readonly onlineVcpus: number;
}

export interface DomainRuntime {
  readonly state: PowerState;
  /** Hypervisor's domain id while running, -1 otherwise. */
  readonly xid: number;
  /**
   * What the host pays for the domain now, KiB, paused or not: the memory the hypervisor gave it
   * (Xen), the resident memory of the process that runs it (a hosted VMM such as QEMU), its
   * cgroup's memory usage (a container), the process's proportional set (process backend). Not
   * what the guest was told it has: a hosted guest that touched little of its memory costs little.
   */
  readonly memoryKb: number;
  readonly memoryMaxKb: number;
  readonly cpuTimeNs: number;
}

export type VmmEvent =
  | { readonly type: 'started'; readonly name: string }
  | {
      readonly type: 'stopped';
      readonly name: string;
      readonly reason: 'shutdown' | 'destroyed' | 'crashed' | 'failed' | 'unknown';
    }
  | { readonly type: 'paused'; readonly name: string }
  | { readonly type: 'unpaused'; readonly name: string }
  | { readonly type: 'suspended'; readonly name: string }
  | { readonly type: 'resumed'; readonly name: string };

export interface ShutdownOptions {
  /**
   * How long shutdown() waits for the domain to stop by itself; past it, it rejects with code
   * 'timeout' and the domain runs on. Only kill() destroys a domain: upstream's shutdown, forced
   * or not, never does (its force skips the checks that protect other qubes).
   */
  readonly timeoutMs: number;
}

/**
 * One hypervisor. Core holds exactly one, and reaches the hypervisor through it
 * only. All methods identify domains by name; `define` must be called (again)
 * whenever the spec changes before the next start.
 *
 * Errors: reject with `VmmError` (see ./errors.ts).
 */
export interface Vmm {
  capabilities(): VmmCapabilities;
  /** Connect to the hypervisor; rejects with code 'unavailable' when it cannot. */
  open(): Promise<void>;
  close(): Promise<void>;
  define(spec: DomainSpec): Promise<void>;
  undefine(name: string): Promise<void>;
  start(name: string): Promise<void>;
  /** Resolves once the domain has stopped (or immediately when it was not running); see ShutdownOptions. */
  shutdown(name: string, options: ShutdownOptions): Promise<void>;
  kill(name: string): Promise<void>;
  pause(name: string): Promise<void>;
  unpause(name: string): Promise<void>;
  suspend(name: string): Promise<void>;
  resume(name: string): Promise<void>;
  /**
   * Runtime state of one domain; Halted for a domain the hypervisor does not know. A domain the
   * hypervisor itself is taking down is Halting (libvirt's SHUTDOWN), one stopped but not yet cleaned
   * up Dying, a dead one not yet destroyed Crashed: core shows these as reported, as upstream does.
   * Being asked to shut down changes nothing here: the domain stays Running while its guest goes down.
   */
  state(name: string): Promise<DomainRuntime>;
  /** Statistics of every running domain. */
  stats(): Promise<readonly DomainStats[]>;
  /**
   * Lifecycle changes, including those the hypervisor initiates (crash, guest poweroff). Fails with
   * EventsLostError when the consumer fell too far behind: it reads states again and subscribes
   * again; any other end means the hypervisor was lost.
   */
  events(): AsyncIterable<VmmEvent>;
  /**
   * Path of the pty carrying a running domain's serial console (admin.vm.Console).
   * Optional: a backend that has it also declares the `console` capability.
   */
  consolePath?(name: string): Promise<string>;
  /**
   * Connects a running frontend domain to its running backend domain: adds whichever side of the
   * link is missing (the backend side to the netvm; the frontend interface too when the frontend
   * runs without one, as after a live change from no netvm). Doing it twice changes nothing.
   * Optional: a backend that has it also declares the `network` capability, and has detachLink.
   */
  attachLink?(link: NetworkLink): Promise<void>;
  /**
   * Takes a link out, as upstream detaches a qube's vif: the backend side out of the netvm when it
   * runs, and the frontend's interface out of the client when it runs (the guest sees it go, and a
   * new one appear with the next attachLink). What is not attached, or runs in no domain, is
   * nothing to do.
   */
  detachLink?(link: NetworkLink): Promise<void>;
}

/** What the daemon gives a backend when it creates it. */
export interface BackendContext {
  /** Directory for the backend's own runtime files (sockets, logs). */
  readonly runtimeDir: string;
  readonly log: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
}

/** A created backend: its Vmm, and dom0's end of the guests' vchans if it has one. */
export interface Backend {
  readonly vmm: Vmm;
  /** Without it the daemon runs no qrexec: domains cannot call dom0 or each other. */
  readonly vchan?: VchanTransport;
}

/**
 * The one export a backend package must have: `export const createBackend: CreateBackend`.
 * Called once per daemon; the Vmm and the transport it returns may share state (one libvirt
 * connection, one runtime directory).
 */
export type CreateBackend = (context: BackendContext) => Backend | Promise<Backend>;
