import type { Server, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  MessageReader,
  MsgType,
  QREXEC_AGENT_TRIGGER_PATH,
  QREXEC_SERVICE_DIRS,
  QrexecProtocolError,
  VCHAN_BASE_PORT,
  decodeExecParams,
  encodeExecParams,
  exchangeHello,
  readCString,
  writeMessage,
  type ExecParams,
} from '@odyssey/qrexec';
import type { Vchan, VchanListenOptions, VchanTransport } from '@odyssey/hal';
import { runExecRequest } from './exec-request.js';
import { RPC_CONFIG_DIRS } from './rpc-config.js';
import { listenForTriggers, type TriggerFromClient } from './trigger-socket.js';

export interface QrexecAgentOptions {
  readonly transport: VchanTransport;
  /** Service directories, searched in order; default upstream's three. */
  readonly serviceDirs?: readonly string[];
  /** Where qrexec-client-vm connects; default /var/run/qubes/qrexec-agent. */
  readonly triggerPath?: string;
  readonly log?: (message: string) => void;
  /**
   * Run each call as the user dom0 names in it (runuser; the agent runs as root), as upstream's
   * agent does; off, every call runs as the agent's own user.
   */
  readonly switchUsers?: boolean;
  /** Where services' configurations are (force-user), searched in order; default upstream's three. */
  readonly rpcConfigDirs?: readonly string[];
}

/** dom0 is domain 0 for every agent. */
const DOM0 = '0';
/** Ring sizes upstream's agent asks for on the control vchan. */
const CONTROL_RING = 4096;
const RELISTEN_DELAY_MS = 1000;

/**
 * qrexec-agent: the vchan server of the control channel toward dom0, the
 * trigger socket for qrexec-client-vm, and the service side of calls into
 * this domain. It serves one dom0 connection at a time and listens again
 * when the daemon goes away.
 */
export class QrexecAgent {
  readonly #transport: VchanTransport;
  readonly #serviceDirs: readonly string[];
  readonly #triggerPath: string;
  readonly #log: (message: string) => void;
  readonly #switchUsers: boolean;
  readonly #rpcConfigDirs: readonly string[];
  /** qrexec-client-vm connections waiting for dom0's answer, by request id. */
  readonly #pending = new Map<string, Socket>();
  #control: Vchan | undefined;
  #triggers: Server | undefined;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(options: QrexecAgentOptions) {
    this.#transport = options.transport;
    this.#serviceDirs = options.serviceDirs ?? QREXEC_SERVICE_DIRS;
    this.#triggerPath = options.triggerPath ?? QREXEC_AGENT_TRIGGER_PATH;
    this.#log = options.log ?? (() => undefined);
    this.#switchUsers = options.switchUsers ?? false;
    this.#rpcConfigDirs = options.rpcConfigDirs ?? RPC_CONFIG_DIRS;
  }

  /** Opens the trigger socket, then serves dom0 in the background until stop(). */
  async start(): Promise<void> {
    this.#triggers = await listenForTriggers(this.#triggerPath, (trigger) => this.#forwardTrigger(trigger));
    this.#loop = this.#serveDom0();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#triggers?.close();
    this.#control?.destroy();
    for (const client of this.#pending.values()) client.destroy();
    this.#pending.clear();
    await this.#loop;
  }

  async #serveDom0(): Promise<void> {
    // The listen stops waiting for dom0 when the agent stops.
    const listenOptions: VchanListenOptions = {
      readMin: CONTROL_RING,
      writeMin: CONTROL_RING,
      signal: this.#stopping.signal,
    };
    while (!this.#stopping.signal.aborted) {
      try {
        const control = await this.#transport.listen(DOM0, VCHAN_BASE_PORT, listenOptions);
        control.on('error', (error: Error) => this.#log(`control vchan: ${error.message}`));
        if (this.#stopping.signal.aborted) {
          control.destroy();
          return;
        }
        await this.#serveControl(control).finally(() => control.destroy());
        this.#log('the control vchan to dom0 closed; listening again');
      } catch (error) {
        this.#log(`control vchan ended: ${(error as Error).message}`);
        // Do not spin when listening itself keeps failing (say, an unwritable socket directory).
        await sleep(RELISTEN_DELAY_MS, undefined, { signal: this.#stopping.signal }).catch(() => undefined);
      } finally {
        this.#control = undefined;
        for (const client of this.#pending.values()) client.destroy();
        this.#pending.clear();
      }
    }
  }

  async #serveControl(control: Vchan): Promise<void> {
    const reader = new MessageReader(control);
    await exchangeHello(control, reader);
    this.#control = control;
    for (;;) {
      const message = await reader.next();
      if (!message) return;
      switch (message.type) {
        case MsgType.EXEC_CMDLINE:
        case MsgType.JUST_EXEC:
          this.#exec(message.payload, message.type === MsgType.JUST_EXEC);
          break;
        case MsgType.SERVICE_CONNECT:
          this.#connectClient(message.payload);
          break;
        case MsgType.SERVICE_REFUSED:
          this.#refuseClient(readCString(message.payload));
          break;
        default:
          throw new QrexecProtocolError(`unexpected message 0x${message.type.toString(16)} from dom0`);
      }
    }
  }

  #exec(payload: Buffer, justExec: boolean): void {
    runExecRequest(
      {
        transport: this.#transport,
        serviceDirs: this.#serviceDirs,
        switchUsers: this.#switchUsers,
        rpcConfigDirs: this.#rpcConfigDirs,
        log: this.#log,
      },
      payload,
      justExec,
    )
      .then((params) => this.#terminated(params))
      .catch((error: unknown) => {
        this.#log(`exec request failed: ${(error as Error).message}`);
        this.#terminated(decodeExecParams(payload));
      });
  }

  #forwardTrigger({ ident, payload, client }: TriggerFromClient): void {
    const control = this.#control;
    if (!control) {
      client.destroy();
      return;
    }
    this.#pending.set(ident, client);
    client.on('close', () => {
      if (this.#pending.get(ident) === client) this.#pending.delete(ident);
    });
    writeMessage(control, MsgType.TRIGGER_SERVICE4, payload).catch(() => client.destroy());
  }

  /** dom0 accepted a request: tell qrexec-client-vm where to listen, and report the port free when it is done. */
  #connectClient(payload: Buffer): void {
    const { connectDomain, connectPort, tail } = decodeExecParams(payload);
    const params = { connectDomain, connectPort };
    const ident = readCString(tail);
    const client = this.#pending.get(ident);
    this.#pending.delete(ident);
    if (!client || client.destroyed) {
      this.#terminated(params);
      return;
    }
    client.once('close', () => this.#terminated(params));
    client.write(encodeExecParams(params));
  }

  #refuseClient(ident: string): void {
    const client = this.#pending.get(ident);
    this.#pending.delete(ident);
    client?.end();
  }

  #terminated(params: ExecParams): void {
    const control = this.#control;
    if (!control) return;
    writeMessage(control, MsgType.CONNECTION_TERMINATED, encodeExecParams(params)).catch(() => undefined);
  }
}
