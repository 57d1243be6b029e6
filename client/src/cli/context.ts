import type { Command } from 'commander';

import { AdminClient } from '../admin-client.js';
import type { VmInfo } from '../api/vm-api.js';
import { QrexecTransport } from '../qrexec-transport.js';
import { DEFAULT_SOCKET_PATH, SocketTransport } from '../socket-transport.js';
import { ExitStatus, UsageError, type CliIo } from './io.js';

export interface GlobalOptions {
  socket?: string;
  qrexec?: boolean;
  json?: boolean;
}

/** What a command needs: the client, the output mode, and the streams. */
export class CliContext {
  readonly client: AdminClient;
  readonly json: boolean;
  private vmList?: Promise<VmInfo[]>;

  constructor(
    readonly io: CliIo,
    options: GlobalOptions,
  ) {
    this.json = options.json ?? false;
    const transport = options.qrexec
      ? new QrexecTransport({ command: io.env.ODYSSEY_QREXEC_CLIENT || undefined })
      : new SocketTransport(options.socket ?? (io.env.ODYSSEY_SOCKET || DEFAULT_SOCKET_PATH));
    this.client = new AdminClient(transport);
  }

  print(text: string): void {
    this.io.stdout.write(text);
  }

  printLine(text: string): void {
    this.io.stdout.write(`${text}\n`);
  }

  printJson(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value)}\n`);
  }

  printError(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }

  /** All qubes, fetched once per command (`admin.vm.List` to dom0). */
  listVms(): Promise<VmInfo[]> {
    this.vmList ??= this.client.vms.list();
    return this.vmList;
  }

  /**
   * Checks that the named qubes exist before acting on them, as upstream's tools do (one `admin.vm.List`
   * first), so a typo is a usage error rather than whatever the first real call would say.
   */
  async requireVms(names: readonly string[]): Promise<VmInfo[]> {
    const vms = await this.listVms();
    return names.map((name) => {
      const vm = vms.find((v) => v.name === name);
      if (!vm) throw new UsageError(`no such domain: '${name}'`);
      return vm;
    });
  }

  async requireVm(name: string): Promise<VmInfo> {
    const [vm] = await this.requireVms([name]);
    return vm as VmInfo;
  }
}

export type CommandHandler = (ctx: CliContext, command: Command) => Promise<number>;

/** Adapts a handler to commander's action signature (positional args..., options, command). */
export function action(io: CliIo, handler: CommandHandler): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args[args.length - 1] as Command;
    const code = await handler(new CliContext(io, command.optsWithGlobals<GlobalOptions>()), command);
    if (code) throw new ExitStatus(code);
  };
}
