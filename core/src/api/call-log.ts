import type { Request } from '@odyssey/wire';

/** What the log says of a call: its header's fields. */
export type LoggedCall = Pick<Request, 'src' | 'method' | 'dest' | 'arg'>;

/** A value from a caller, on one log line: control characters (a forged next line) as \xNN. */
const field = (value: string): string =>
  value === ''
    ? "''"
    : value.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

/**
 * The log line of an Admin API call from a domain other than dom0 (dom0's own
 * calls are not logged): who asked what of whom, what the qrexec policy decided,
 * and how it ended (`result=`) or why it was refused (`reason=`).
 */
export function adminCallLine(call: LoggedCall, decision: 'allow' | 'deny', outcome: string): string {
  return (
    `admin call: source=${field(call.src)} method=${field(call.method)} dest=${field(call.dest)} ` +
    `arg=${field(call.arg)} policy=${decision} ${outcome}`
  );
}

/** Whether a call comes from dom0 (by name; the socket's callers are dom0's own tools and qrexec). */
export const fromDom0 = (source: string): boolean => source === 'dom0' || source === '@adminvm';
