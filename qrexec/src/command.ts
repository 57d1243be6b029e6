import { NOGUI_CMD_PREFIX, RPC_REQUEST_COMMAND } from './constants.js';
import { QrexecProtocolError } from './errors.js';

/** Splits at the first `+`; the argument is what follows it ('' when there is none). */
export function splitServiceAndArg(serviceAndArg: string): {
  service: string;
  argument: string;
  hasArgument: boolean;
} {
  const plus = serviceAndArg.indexOf('+');
  if (plus < 0) return { service: serviceAndArg, argument: '', hasArgument: false };
  return {
    service: serviceAndArg.slice(0, plus),
    argument: serviceAndArg.slice(plus + 1),
    hasArgument: true,
  };
}

/** The daemon always passes an argument on: `admin.vm.List` becomes `admin.vm.List+`. */
export function withArgument(serviceAndArg: string): string {
  return serviceAndArg.includes('+') ? serviceAndArg : `${serviceAndArg}+`;
}

/** What dom0 sends an agent to run a service: `USER:QUBESRPC SERVICE+ARG SOURCE`. */
export function vmServiceCommand(user: string, serviceAndArg: string, source: string): string {
  return `${user}:${RPC_REQUEST_COMMAND} ${serviceAndArg} ${source}`;
}

export type ParsedCommand =
  | {
      readonly kind: 'service';
      readonly user: string;
      readonly nogui: boolean;
      readonly serviceAndArg: string;
      readonly source: string;
    }
  | { readonly kind: 'shell'; readonly user: string; readonly nogui: boolean; readonly command: string };

/** Parses an agent-side command line `USER:[nogui:]COMMAND` (reference §4.3). */
export function parseVmCommand(cmdline: string): ParsedCommand {
  const colon = cmdline.indexOf(':');
  if (colon <= 0) throw new QrexecProtocolError(`command line without a user: ${cmdline}`);
  const user = cmdline.slice(0, colon);
  let rest = cmdline.slice(colon + 1);
  const nogui = rest.startsWith(NOGUI_CMD_PREFIX);
  if (nogui) rest = rest.slice(NOGUI_CMD_PREFIX.length);
  if (!rest.startsWith(`${RPC_REQUEST_COMMAND} `)) return { kind: 'shell', user, nogui, command: rest };
  const [serviceAndArg, source, ...extra] = rest.slice(RPC_REQUEST_COMMAND.length + 1).split(' ');
  if (!serviceAndArg || source === undefined || extra.length > 0) {
    throw new QrexecProtocolError(`malformed service request: ${rest}`);
  }
  return { kind: 'service', user, nogui, serviceAndArg, source };
}
