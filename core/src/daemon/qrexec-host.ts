import type { Server } from 'node:net';
import { join } from 'node:path';
import { adminCallLine } from '../api/call-log.js';
import { timerMs } from '../clock.js';
import type { Log } from '../log.js';
import type { VchanTransport } from '@odyssey/hal';
import type { App } from '../model/app.js';
import { QubesException } from '../model/errors.js';
import type { Vm } from '../model/vm.js';
import {
  closeLocalSocket,
  listenLocalSocket,
  localSocketName,
  parsePolicyResponse,
  QrexecDaemon,
  settleAsk,
  type DisposableFactory,
  splitServiceName,
  type QrexecPolicyRequest,
  type QrexecPolicyResolution,
} from '@odyssey/qrexec';
import type { AppPolicy } from './app-policy.js';
import { P } from '../model/vm-properties.js';

export interface QrexecHostOptions {
  readonly app: App;
  /** dom0's end of the backend's vchans. */
  readonly transport: VchanTransport;
  /** Without a policy every call from a domain is refused. */
  readonly policy: AppPolicy | null;
  /** dom0's qrexec services (the admin.* links to the admin socket among them). */
  readonly serviceDirs: readonly string[];
  /** Starts a halted domain a call may autostart; resolves once its qrexec is connected. */
  readonly startDomain: (name: string) => Promise<void>;
  /** Makes the disposables of calls the policy sends to `@dispvm:TEMPLATE`; refused without it. */
  readonly disposables?: DisposableFactory;
  readonly log: Log;
  /** How long to wait for a domain's agent; default: the domain's qrexec_timeout property. */
  readonly connectTimeoutMs?: number;
  /**
   * Where each connected domain gets its local socket `qrexec.<name>` (mode
   * 0600) for dom0 callers such as odyssey-qrexec-client; none without it.
   */
  readonly socketDir?: string;
  /** Where odyssey-policy-agent answers `ask` decisions; without it, or with no agent there, they are denied. */
  readonly policyAgentSocket?: string;
}

interface Connection {
  readonly xid: number;
  readonly daemon: QrexecDaemon;
  readonly started: Promise<void>;
  connected: boolean;
  /** The local socket, once listening; removed when the connection ends. */
  local?: Promise<Server | undefined>;
}

/**
 * The qrexec-daemons of dom0: one per running domain, on the domain's xid,
 * kept in step with the domains' power state (every start, stop, and the
 * domains found running when the backend connects change `xid`). Policy
 * questions are answered from the daemon's own policy store and system info,
 * as qrexec-policy-daemon answers them from qubesd's.
 */
export class QrexecHost {
  private readonly connections = new Map<string, Connection>();
  private readonly unsubscribe: () => void;

  constructor(private readonly options: QrexecHostOptions) {
    this.unsubscribe = options.app.events.subscribe((event) => {
      if (event.name === 'property-reset:xid' && event.subject) this.follow(event.subject);
    });
    for (const vm of options.app.domains.list()) this.follow(vm);
  }

  /**
   * Connects to the agent of `name` running as domain `xid` (replacing a
   * connection to an earlier run); resolves once the agent said HELLO.
   */
  connect(name: string, xid: number): Promise<void> {
    const current = this.connections.get(name);
    if (current?.xid === xid) return current.started;
    if (current) this.drop(name, current);
    const daemon = new QrexecDaemon({
      domain: { name, id: xid },
      transport: this.options.transport,
      policy: (request) => this.decide(request),
      serviceDirs: this.options.serviceDirs,
      peers: (peer) => this.peer(peer),
      startDomain: this.options.startDomain,
      ...(this.options.disposables ? { disposables: this.options.disposables } : {}),
      defaultUser: this.defaultUser(name),
      connectTimeoutMs: this.options.connectTimeoutMs ?? this.qrexecTimeoutMs(name),
      log: (message) => this.options.log('info', message),
    });
    const connection: Connection = { xid, daemon, started: daemon.start(), connected: false };
    this.connections.set(name, connection);
    const forget = (): void => {
      if (this.connections.get(name) === connection) this.connections.delete(name);
      void this.closeLocal(connection);
    };
    connection.started.then(
      () => {
        connection.connected = true;
        if (this.connections.get(name) === connection) this.openLocal(name, connection);
        this.options.log('debug', `qrexec connected to ${name} (domain ${xid})`);
        void daemon.closed.then(forget);
      },
      (error: unknown) => {
        forget();
        this.options.log('warn', `qrexec: cannot connect to ${name} (domain ${xid}): ${String(error)}`);
      },
    );
    return connection.started;
  }

  disconnect(name: string): void {
    const current = this.connections.get(name);
    if (current) this.drop(name, current);
  }

  /** The connected daemon of a running domain, for calls into it. */
  peer(name: string): QrexecDaemon | undefined {
    const connection = this.connections.get(name);
    return connection?.connected ? connection.daemon : undefined;
  }

  /**
   * dom0 calls `service` in the running domain `vm` (upstream's run_service_for_stdio with
   * stderr=STDOUT): its exit code, and its stdout followed by its stderr.
   */
  async serviceForStdio(vm: Vm, service: string): Promise<{ exitCode: number; output: Buffer }> {
    const daemon = this.peer(vm.name);
    if (!daemon) throw new QubesException(`qrexec of ${vm.name} is not connected`);
    const { exitCode, stdout, stderr } = await daemon.callService(service);
    return { exitCode, output: Buffer.concat([stdout, stderr]) };
  }

  async close(): Promise<void> {
    this.unsubscribe();
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(
      all.flatMap((c) => [
        this.closeLocal(c),
        c.started.then(
          () => c.daemon.close(),
          () => undefined,
        ),
      ]),
    );
  }

  /** The path of a domain's local socket, when the host serves them. */
  localSocketPath(name: string): string | undefined {
    return this.options.socketDir === undefined
      ? undefined
      : join(this.options.socketDir, localSocketName(name));
  }

  private openLocal(name: string, connection: Connection): void {
    const path = this.localSocketPath(name);
    if (path === undefined) return;
    const daemon = connection.daemon;
    connection.local = listenLocalSocket(
      path,
      (cmdline, streams) => daemon.runCommand(cmdline, streams),
      (message) => this.options.log('info', `qrexec ${name}: ${message}`),
    ).catch((error: unknown) => {
      this.options.log('warn', `qrexec: cannot serve ${path}: ${String(error)}`);
      return undefined;
    });
  }

  private closeLocal(connection: Connection): Promise<void> {
    const local = connection.local;
    connection.local = undefined;
    if (!local) return Promise.resolve();
    return local.then((server) => {
      if (server) closeLocalSocket(server);
    });
  }

  /** Domains whose xid changed: connect to the running ones, let go of the stopped ones. */
  private follow(vm: Vm): void {
    if (vm.isAdminVm) return;
    if (vm.xid < 0) this.disconnect(vm.name);
    else this.connect(vm.name, vm.xid).catch(() => undefined);
  }

  private drop(name: string, connection: Connection): void {
    this.connections.delete(name);
    void this.closeLocal(connection);
    void connection.started.then(
      () => connection.daemon.close(),
      () => undefined,
    );
  }

  private qrexecTimeoutMs(name: string): number {
    const seconds = this.options.app.domains.byName(name)?.props.tryGet(P.qrexec_timeout);
    return timerMs(seconds ?? 60);
  }

  private defaultUser(name: string): string | undefined {
    const user = this.options.app.domains.byName(name)?.props.tryGet(P.default_user);
    return user ? user : undefined;
  }

  private async decide(request: QrexecPolicyRequest): Promise<QrexecPolicyResolution> {
    const policy = this.options.policy;
    let resolution: QrexecPolicyResolution = { result: 'deny' };
    let reason = 'no policy is loaded';
    if (policy) {
      const evaluated = policy.evaluate({
        source: request.source,
        target: request.target,
        call: request.serviceAndArg,
        requestedSource: request.requestedSource ?? null,
      });
      const outcome = await settleAsk(evaluated, this.options.policyAgentSocket);
      resolution = parsePolicyResponse(outcome.response ?? 'result=deny');
      if (outcome.decision.result === 'deny') reason = outcome.decision.reason;
      else if (evaluated.decision.result === 'ask' && outcome.decision.result === 'allow')
        this.options.log(
          'info',
          `qrexec policy: ${request.source} -> ${request.target} ${request.serviceAndArg}: the user allowed target ${outcome.decision.target}`,
        );
    }
    if (resolution.result === 'deny') this.options.log('info', this.refusalLine(request, reason));
    return resolution;
  }

  /** An admin call the policy allows is logged by the admin socket with its result; a refused one only here. */
  private refusalLine(request: QrexecPolicyRequest, reason: string): string {
    const [service, plusArg] = splitServiceName(request.serviceAndArg);
    if (!service.startsWith('admin.')) return `qrexec policy: ${reason}`;
    return adminCallLine(
      { src: request.source, method: service, dest: request.target, arg: plusArg.slice(1) },
      'deny',
      `reason=${reason}`,
    );
  }
}
