import { QubesDaemonAccessError, QubesDaemonCommunicationError, errorFromReply } from './errors.js';

/** One Admin API call, as the transports see it. `arg` is '' when the method takes none. */
export interface AdminCall {
  method: string;
  dest: string;
  arg: string;
  payload: Uint8Array;
}

export const EMPTY_RESPONSE_MESSAGE = 'Got empty response from qubesd. See journalctl in dom0 for details.';

/** `method+arg`: the qrexec service name with its argument, as both qrexec and qubesd spell it. */
export function serviceName(call: Pick<AdminCall, 'method' | 'arg'>): string {
  return `${call.method}+${call.arg}`;
}

/**
 * The bytes a dom0 client writes to qubesd.sock. The `+` is always present, even with an empty
 * argument, because that is what upstream's client sends and what policy matching sees.
 */
export function encodeRequest(call: AdminCall): Buffer {
  const header = Buffer.from(`${serviceName(call)} dom0 name ${call.dest}\0`, 'utf8');
  return Buffer.concat([header, call.payload]);
}

/** Returns the body of an OK reply, or throws the error an exception reply (or a malformed one) means. */
export function parseResponse(data: Buffer): Buffer {
  if (data.length === 0) throw new QubesDaemonAccessError(EMPTY_RESPONSE_MESSAGE);
  if (data[1] === 0 && data[0] === 0x30) return data.subarray(2);
  if (data[1] === 0 && data[0] === 0x32) throw exceptionFromReply(data.subarray(2));
  throw new QubesDaemonCommunicationError('Invalid response format');
}

function exceptionFromReply(rest: Buffer): Error {
  const fields: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < 3; i++) {
    const end = rest.indexOf(0, start);
    if (end < 0) return new QubesDaemonCommunicationError('Invalid response format');
    fields.push(rest.subarray(start, end));
    start = end + 1;
  }
  const [type, traceback, message] = fields.map((f) => f.toString('utf8')) as [string, string, string];
  return errorFromReply(type, message, traceback);
}
