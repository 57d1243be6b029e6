import { PassThrough, Readable, type Writable } from 'node:stream';
import type { Vchan, VchanListenOptions, VchanTransport } from '@odyssey/hal';
import {
  decodeExecParams,
  encodeExecParams,
  encodeServiceConnect,
  encodeServiceParams,
  type ExecParams,
} from './codec.js';
import { vmServiceCommand, withArgument } from './command.js';
import { MsgType, QREXEC_PROTOCOL_VERSION, VCHAN_BASE_PORT } from './constants.js';
import { callOverDataChannel, serveDataChannel, serviceFromDirs } from './data-channel.js';
import { disposableTemplateOf, type DisposableFactory } from './disposables.js';
import { QrexecProtocolError } from './errors.js';
import { MessageReader, writeMessage } from './framing.js';
import { exchangeHello } from './handshake.js';
import { targetIsDom0, type QrexecPolicy } from './policy.js';
import { PortAllocator } from './ports.js';
import { checkAgentHeader, parseTrigger, type TriggerRequest } from './validate.js';

/**
 * A domain as qrexec sees it. Its vchan address is the decimal domain id, as
 * in upstream's vchan-socket: agents only ever learn peers' ids from the wire.
 */
export interface QrexecDomainRef {
  readonly name: string;
  readonly id: number;
}

export interface QrexecDaemonOptions {
  readonly domain: QrexecDomainRef;
  readonly transport: VchanTransport;
  readonly policy: QrexecPolicy;
  /** dom0's service directories, searched in order (upstream: /run/qubes-rpc, /usr/local/etc/qubes-rpc, /etc/qubes-rpc). */
  readonly serviceDirs: readonly string[];
  /** The daemons of the other domains, for calls from this domain to another VM. */
  readonly peers?: (name: string) => QrexecDaemon | undefined;
  /** Starts a halted target when the policy allows autostart; resolves once its daemon is reachable through peers. */
  readonly startDomain?: (name: string) => Promise<void>;
  /** Makes the disposables of `@dispvm:TEMPLATE` targets; without it such calls are refused. */
  readonly disposables?: DisposableFactory;
  /** Replaces `DEFAULT` as the user of commands sent to this domain. */
  readonly defaultUser?: string;
  /** How long to wait for the agent's control vchan (default 60 s). */
  readonly connectTimeoutMs?: number;
  readonly log?: (message: string) => void;
}

/** Where a peer's service runs, and when it is over (its agent reported the data vchan closed, or it is gone). */
export interface PeerExec extends ExecParams {
  readonly ended: Promise<void>;
}

export interface ServiceCallResult {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly exitCode: number;
}

const DOM0: QrexecDomainRef = { name: 'dom0', id: 0 };

/**
 * What callService keeps of each of a service's output streams by default: the domain writes it
 * and dom0 holds it. The rest is read (the service never blocks on a full pipe) and dropped.
 */
export const CALL_OUTPUT_LIMIT = 1024 * 1024;
/** dom0's service side gives up on the caller's data vchan after this long, as upstream's 5 s. */
const DOM0_SERVICE_CONNECT_TIMEOUT_MS = 5000;

/**
 * qrexec-daemon for one domain: the client of that domain's agent on the
 * control vchan (port 512). It routes the domain's service requests through
 * the policy to dom0 services or to another domain's agent, and lets dom0
 * call services in the domain.
 */
export class QrexecDaemon {
  readonly domain: QrexecDomainRef;
  readonly #options: QrexecDaemonOptions;
  readonly #ports: PortAllocator;
  #control: Vchan | undefined;
  #version: number | undefined;
  #closed: Promise<void> | undefined;
  /** Aborted when the control vchan ends, so that data vchans still waiting for the agent give up. */
  readonly #agentGone = new AbortController();
  /** Peer calls into this domain still running, by `domain:port` of the data vchan: resolving ends them. */
  readonly #running = new Map<string, () => void>();

  constructor(options: QrexecDaemonOptions) {
    this.#options = options;
    this.domain = options.domain;
    this.#ports = new PortAllocator(options.domain.id);
  }

  /** The negotiated protocol version, once start() finished. */
  get protocolVersion(): number | undefined {
    return this.#version;
  }

  /** Resolves when the agent's control channel has ended (agent gone, protocol error or close()). */
  get closed(): Promise<void> {
    if (!this.#closed) throw new Error('qrexec daemon not started');
    return this.#closed;
  }

  /**
   * Connects to the agent and exchanges HELLO; the domain's requests are served from then on. The
   * connect timeout bounds all of it: a guest whose channel answers but whose agent never says HELLO
   * (a hung guest) fails like one that never connected, instead of holding its start forever.
   */
  async start(): Promise<void> {
    const timeoutMs = this.#options.connectTimeoutMs ?? 60_000;
    let expired = false;
    let control: Vchan | undefined;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        expired = true;
        control?.destroy();
        reject(
          new QrexecProtocolError(`no HELLO from the agent of ${this.domain.name} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
    });
    const handshake = this.#handshake(
      timeoutMs,
      () => expired,
      (c) => (control = c),
    );
    try {
      await Promise.race([handshake, deadline]);
    } finally {
      clearTimeout(timer);
      handshake.catch(() => undefined);
    }
  }

  async #handshake(
    timeoutMs: number,
    expired: () => boolean,
    opened: (control: Vchan) => void,
  ): Promise<void> {
    const control = await this.#options.transport.connect(String(this.domain.id), VCHAN_BASE_PORT, {
      timeoutMs,
    });
    if (expired()) {
      control.destroy();
      throw new QrexecProtocolError('the control vchan connected after the connect timeout');
    }
    opened(control);
    control.on('error', (error: Error) => this.#log(`control vchan: ${error.message}`));
    const reader = new MessageReader(control);
    try {
      this.#version = await exchangeHello(control, reader, QREXEC_PROTOCOL_VERSION);
      if (expired()) throw new QrexecProtocolError('HELLO came after the connect timeout');
    } catch (error) {
      control.destroy();
      throw error;
    }
    this.#control = control;
    this.#closed = this.#serve(control, reader)
      .catch((error: unknown) => {
        this.#log(`closing control vchan: ${(error as Error).message}`);
        control.destroy();
      })
      .finally(() => {
        this.#agentGone.abort();
        for (const key of [...this.#running.keys()]) this.#ended(key);
      });
  }

  async close(): Promise<void> {
    this.#control?.destroy();
    await this.#closed;
  }

  /**
   * dom0 calls a service in this domain, as qrexec-client does: the daemon
   * asks the agent to run `USER:QUBESRPC SERVICE+ARG dom0` and dom0 is the
   * vchan server of the data channel. Each output stream is kept up to
   * `maxOutputBytes` (CALL_OUTPUT_LIMIT by default).
   */
  async callService(
    serviceAndArg: string,
    options: { stdin?: Buffer | Readable; user?: string; maxOutputBytes?: number } = {},
  ): Promise<ServiceCallResult> {
    const command = vmServiceCommand(options.user ?? 'DEFAULT', withArgument(serviceAndArg), DOM0.name);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const limit = options.maxOutputBytes ?? CALL_OUTPUT_LIMIT;
    const collected = Promise.all([collect(stdout, limit), collect(stderr, limit)]);
    const stdin =
      options.stdin instanceof Readable ? options.stdin : Readable.from([options.stdin ?? Buffer.alloc(0)]);
    const exitCode = await this.runCommand(command, { stdin, stdout, stderr });
    const [out, err] = await collected;
    return { stdout: out, stderr: err, exitCode };
  }

  /**
   * dom0 runs `cmdline` (`USER:COMMAND`, e.g. `DEFAULT:QUBESRPC qubes.VMShell+ dom0`)
   * in this domain with streamed stdio, as qrexec-client -d does; resolves with
   * the exit code once the service side sent it. The sinks are ended then.
   */
  async runCommand(
    cmdline: string,
    streams: { stdin: Readable; stdout: Writable; stderr: Writable },
  ): Promise<number> {
    const port = this.#allocate(DOM0.id);
    // Transports that take an AbortSignal stop waiting when the agent goes away.
    const listenOptions: VchanListenOptions = { signal: this.#agentGone.signal };
    const listening = this.#options.transport.listen(String(this.domain.id), port, listenOptions);
    listening.catch(() => undefined);
    await this.#send(
      MsgType.EXEC_CMDLINE,
      this.#execPayload({ connectDomain: DOM0.id, connectPort: port }, cmdline),
    );
    const channel = await listening;
    channel.on('error', () => undefined);
    const release = this.#endWithAgent(channel);
    try {
      return await callOverDataChannel(channel, streams);
    } finally {
      release();
      streams.stdout.end();
      streams.stderr.end();
      channel.end();
    }
  }

  /**
   * Another domain's daemon asks this one to start `command` for a VM-to-VM
   * call from `sourceId`. Returns where the caller's agent must listen.
   */
  async execForPeer(sourceId: number, command: string): Promise<PeerExec> {
    const port = this.#allocate(sourceId);
    const key = `${sourceId}:${port}`;
    const ended = new Promise<void>((resolve) => {
      if (this.#agentGone.signal.aborted) resolve();
      this.#running.set(key, resolve);
    });
    try {
      await this.#send(
        MsgType.EXEC_CMDLINE,
        this.#execPayload({ connectDomain: sourceId, connectPort: port }, command),
      );
    } catch (error) {
      this.#ended(key);
      throw error;
    }
    return { connectDomain: this.domain.id, connectPort: port, ended };
  }

  #ended(key: string): void {
    this.#running.get(key)?.();
    this.#running.delete(key);
  }

  async #serve(control: Vchan, reader: MessageReader): Promise<void> {
    for (;;) {
      const message = await reader.next();
      if (!message) return;
      checkAgentHeader({ type: message.type, len: message.payload.length }, this.#version ?? 0);
      if (message.type === MsgType.CONNECTION_TERMINATED) {
        const { connectDomain, connectPort } = decodeExecParams(message.payload);
        this.#ports.release(connectPort, connectDomain);
        this.#ended(`${connectDomain}:${connectPort}`);
        continue;
      }
      const parsed = parseTrigger(message.type, message.payload);
      if (!parsed.ok) {
        this.#log(`refusing a malformed request: ${parsed.reason}`);
        await this.#refuse(parsed.requestId);
        continue;
      }
      this.#handleRequest(parsed.request).catch((error: unknown) => {
        this.#log(`request ${parsed.request.serviceAndArg} failed: ${(error as Error).message}`);
        if (!control.destroyed)
          this.#refuse(encodeServiceParams(parsed.request.requestId)).catch(() => undefined);
      });
    }
  }

  async #handleRequest(request: TriggerRequest): Promise<void> {
    const source = this.domain.name;
    const resolution = await this.#options.policy({
      source,
      target: request.target,
      serviceAndArg: request.serviceAndArg,
      ...(request.requestedSource ? { requestedSource: request.requestedSource } : {}),
    });
    const refuse = (why: string): Promise<void> => {
      this.#log(`${source} → ${request.target} ${request.serviceAndArg}: refused (${why})`);
      return this.#refuse(encodeServiceParams(request.requestId));
    };
    if (resolution.result !== 'allow') return refuse('denied by policy');
    if (resolution.target === source) return refuse('loopback qrexec connection not supported');
    const serviceAndArg = withArgument(request.serviceAndArg);
    if (targetIsDom0(resolution.target)) {
      return this.#runDom0Service(request.requestId, {
        serviceAndArg,
        source,
        requestedTarget: resolution.requestedTarget,
      });
    }
    const command = vmServiceCommand(resolution.user, serviceAndArg, source);
    const template = disposableTemplateOf(resolution.target);
    if (template !== undefined) {
      if (!this.#options.disposables) return refuse(`target ${resolution.target}: no disposables here`);
      return this.#callDisposable(this.#options.disposables, template, command, request.requestId);
    }
    if (resolution.target.startsWith('@')) return refuse(`target ${resolution.target} is not supported`);
    const peer = await this.#reachPeer(resolution.target, resolution.autostart);
    if (!peer) return refuse(`target ${resolution.target} is not running`);
    const params = await peer.execForPeer(this.domain.id, command);
    await this.#send(MsgType.SERVICE_CONNECT, encodeServiceConnect(params, request.requestId));
  }

  /**
   * A call to a new disposable: created and started for it, and destroyed once
   * the service is over or the caller's domain is gone, whichever comes first.
   * A failure before the caller was answered refuses the call (by #serve).
   */
  async #callDisposable(
    disposables: DisposableFactory,
    template: string,
    command: string,
    requestId: string,
  ): Promise<void> {
    const name = await disposables.create(template, this.domain.name);
    const destroy = (): Promise<void> =>
      disposables
        .destroy(name)
        .catch((error: unknown) => this.#log(`cannot destroy ${name}: ${(error as Error).message}`));
    let exec: PeerExec;
    try {
      const peer = this.#options.peers?.(name);
      if (!peer) throw new Error(`disposable ${name} has no qrexec connection`);
      exec = await peer.execForPeer(this.domain.id, command);
      await this.#send(MsgType.SERVICE_CONNECT, encodeServiceConnect(exec, requestId));
    } catch (error) {
      await destroy();
      throw error;
    }
    const signal = this.#agentGone.signal;
    let callerGone = (): void => undefined;
    const over = new Promise<void>((resolve) => {
      callerGone = resolve;
      if (signal.aborted) resolve();
      signal.addEventListener('abort', callerGone, { once: true });
      void exec.ended.then(resolve);
    });
    void over.then(() => {
      signal.removeEventListener('abort', callerGone);
      return destroy();
    });
  }

  async #reachPeer(name: string, autostart: boolean): Promise<QrexecDaemon | undefined> {
    const running = this.#options.peers?.(name);
    if (running || !autostart || !this.#options.startDomain) return running;
    await this.#options.startDomain(name);
    return this.#options.peers?.(name);
  }

  async #runDom0Service(
    requestId: string,
    call: { serviceAndArg: string; source: string; requestedTarget: string },
  ): Promise<void> {
    const port = this.#allocate(DOM0.id);
    await this.#send(
      MsgType.SERVICE_CONNECT,
      encodeServiceConnect({ connectDomain: DOM0.id, connectPort: port }, requestId),
    );
    // The request is answered now; a failure from here on only ends this call, it is not refused.
    this.#serveDom0Call(port, call).catch((error: unknown) =>
      this.#log(`${call.serviceAndArg} from ${call.source}: ${(error as Error).message}`),
    );
  }

  async #serveDom0Call(
    port: number,
    call: { serviceAndArg: string; source: string; requestedTarget: string },
  ): Promise<void> {
    const channel = await this.#options.transport.connect(String(this.domain.id), port, {
      timeoutMs: DOM0_SERVICE_CONNECT_TIMEOUT_MS,
    });
    channel.on('error', () => undefined);
    const release = this.#endWithAgent(channel);
    try {
      await serveDataChannel(channel, serviceFromDirs(this.#options.serviceDirs, call));
    } finally {
      release();
      channel.end();
    }
  }

  /**
   * A call's data vchan ends when the domain's agent is gone (the domain stopped or crashed):
   * not every transport sees a dead peer (libxenvchan does not), and the caller would wait forever.
   */
  #endWithAgent(channel: Vchan): () => void {
    const signal = this.#agentGone.signal;
    const end = (): void => void channel.destroy();
    if (signal.aborted) end();
    signal.addEventListener('abort', end, { once: true });
    return () => signal.removeEventListener('abort', end);
  }

  #allocate(connectDomain: number): number {
    const port = this.#ports.allocate(connectDomain);
    if (port === undefined) throw new Error(`no free qrexec data port in ${this.domain.name}`);
    return port;
  }

  #execPayload(params: ExecParams, command: string): Buffer {
    const user = this.#options.defaultUser;
    return encodeExecParams(
      params,
      user && command.startsWith('DEFAULT:') ? user + command.slice(7) : command,
    );
  }

  #refuse(requestId: Buffer): Promise<void> {
    return this.#send(MsgType.SERVICE_REFUSED, requestId);
  }

  #send(type: number, payload: Buffer): Promise<void> {
    if (!this.#control) return Promise.reject(agentGone());
    return writeMessage(this.#control, type, payload);
  }

  #log(message: string): void {
    this.#options.log?.(`qrexec ${this.domain.name}: ${message}`);
  }
}

function agentGone(): QrexecProtocolError {
  return new QrexecProtocolError('the agent closed the control vchan');
}

/** The first `limit` bytes of `stream`, read to its end. */
async function collect(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let kept = 0;
  for await (const chunk of stream) {
    const room = limit - kept;
    if (room <= 0) continue;
    const part = (chunk as Buffer).subarray(0, room);
    chunks.push(part);
    kept += part.length;
  }
  return Buffer.concat(chunks);
}
