/**
 * The admin socket's framing (admin-api-reference §1.2, §1.3): one request per
 * connection, `<method>[+<arg>] <src> <dest_type> <dest>\0<payload>`, answered
 * with OK (`0\0`), EXCEPTION (`2\0`) or a stream of EVENTs (`1\0`).
 */
export const MAX_REQUEST_BYTES = 65536;

export interface Request {
  readonly method: string;
  readonly arg: string;
  readonly src: string;
  readonly dest: string;
  readonly payload: Buffer;
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

export function okResponse(body: string | undefined): Buffer {
  return Buffer.concat([Buffer.from([0x30, 0]), Buffer.from(body ?? '', 'utf8')]);
}

export function exceptionResponse(type: string, message: string, traceback = ''): Buffer {
  return Buffer.concat([
    Buffer.from([0x32, 0]),
    Buffer.from(`${type}\0${traceback}\0`, 'utf8'),
    Buffer.from(message, 'utf8'),
    Buffer.from([0]),
  ]);
}

/** Event values are ASCII on the wire; anything else is replaced rather than mangled into bytes. */
function ascii(s: string): string {
  return s.replace(/[^\x00-\x7f]/g, '?');
}

export function eventMessage(
  subject: string,
  event: string,
  args: readonly (readonly [string, string])[],
): Buffer {
  let s = `${ascii(subject)}\0${ascii(event)}\0`;
  for (const [k, v] of args) s += `${ascii(k)}\0${ascii(v)}\0`;
  return Buffer.concat([Buffer.from([0x31, 0]), Buffer.from(`${s}\0`, 'latin1')]);
}
