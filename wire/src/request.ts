/**
 * The admin socket's request framing (admin-api-reference §1.2): one request per connection,
 * `<method>[+<arg>] <src> <dest_type> <dest>\0<payload>`. odysseyd parses it; clients write it.
 */
export const MAX_REQUEST_BYTES = 65536;

/** A request as the daemon sees it, the destination keyword `adminvm` already read as dom0. */
export interface Request {
  readonly method: string;
  readonly arg: string;
  readonly src: string;
  readonly dest: string;
  readonly payload: Buffer;
}

/** One call as a client makes it. `arg` is '' when the method takes none. */
export interface AdminCall {
  method: string;
  dest: string;
  arg: string;
  payload: Uint8Array;
}

/** Parses a whole request; null means a framing error, which upstream answers by closing without a reply. */
export function parseRequest(buf: Buffer): Request | null {
  const nul = buf.indexOf(0);
  if (nul === -1) return null;
  const header = buf.subarray(0, nul).toString('latin1');
  const fields = splitMax(header, ' ', 3);
  if (fields.length !== 4) return null;
  const [methArg = '', src = '', destType = '', rawDest = ''] = fields;
  const keywordAdminvm = destType === 'keyword' && rawDest === 'adminvm';
  if (destType !== 'name' && !keywordAdminvm) return null;
  const dest = keywordAdminvm ? 'dom0' : rawDest;
  const plus = methArg.indexOf('+');
  const method = plus === -1 ? methArg : methArg.slice(0, plus);
  const arg = plus === -1 ? '' : methArg.slice(plus + 1);
  return { method, arg, src, dest, payload: buf.subarray(nul + 1) };
}

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

/** Python's str.split(sep, maxsplit). */
function splitMax(s: string, sep: string, max: number): string[] {
  const out: string[] = [];
  let rest = s;
  while (out.length < max) {
    const i = rest.indexOf(sep);
    if (i === -1) break;
    out.push(rest.slice(0, i));
    rest = rest.slice(i + sep.length);
  }
  out.push(rest);
  return out;
}
