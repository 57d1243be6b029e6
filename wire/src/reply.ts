/**
 * The admin socket's replies (admin-api-reference §1.3): OK (`0\0<body>`), EXCEPTION
 * (`2\0<type>\0<traceback>\0<message>\0`) or, for streaming methods, EVENT messages
 * (`1\0<subject>\0<event>\0(<key>\0<value>\0)*\0`).
 */
export const REPLY_OK = 0x30;
export const REPLY_EVENT = 0x31;
export const REPLY_EXCEPTION = 0x32;

export function okResponse(body: string | undefined): Buffer {
  return Buffer.concat([Buffer.from([REPLY_OK, 0]), Buffer.from(body ?? '', 'utf8')]);
}

export function exceptionResponse(type: string, message: string, traceback = ''): Buffer {
  return Buffer.concat([
    Buffer.from([REPLY_EXCEPTION, 0]),
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
  return Buffer.concat([Buffer.from([REPLY_EVENT, 0]), Buffer.from(`${s}\0`, 'latin1')]);
}

/** A whole non-streaming reply, read by a client. */
export type DecodedReply =
  | { readonly kind: 'ok'; readonly body: Buffer }
  | {
      readonly kind: 'exception';
      readonly type: string;
      readonly traceback: string;
      readonly message: string;
    }
  /** The daemon closed without a word: a framing error, a refusal, or a failure it did not report. */
  | { readonly kind: 'empty' }
  | { readonly kind: 'malformed' };

export function decodeReply(data: Buffer): DecodedReply {
  if (data.length === 0) return { kind: 'empty' };
  if (data[1] !== 0) return { kind: 'malformed' };
  if (data[0] === REPLY_OK) return { kind: 'ok', body: data.subarray(2) };
  if (data[0] !== REPLY_EXCEPTION) return { kind: 'malformed' };
  const fields: string[] = [];
  let start = 2;
  for (let i = 0; i < 3; i++) {
    const end = data.indexOf(0, start);
    if (end < 0) return { kind: 'malformed' };
    fields.push(data.subarray(start, end).toString('utf8'));
    start = end + 1;
  }
  const [type = '', traceback = '', message = ''] = fields;
  return { kind: 'exception', type, traceback, message };
}
