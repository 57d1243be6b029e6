/** What an Admin API call asks: the fields of its header. */
export interface AdminCall {
  readonly source: string;
  readonly method: string;
  readonly dest: string;
  readonly arg: string;
}

/**
 * The log line of an Admin API call from a domain other than dom0 (dom0's own
 * calls are not logged): who asked what of whom, what the qrexec policy decided,
 * and how it ended (`result=`) or why it was refused (`reason=`).
 */
export function adminCallLine(call: AdminCall, decision: 'allow' | 'deny', outcome: string): string {
  return (
    `admin call: source=${call.source} method=${call.method} dest=${call.dest} ` +
    `arg=${call.arg === '' ? "''" : call.arg} policy=${decision} ${outcome}`
  );
}

/** Whether a call comes from dom0 (by name; the socket's callers are dom0's own tools and qrexec). */
export const fromDom0 = (source: string): boolean => source === 'dom0' || source === '@adminvm';
