import { readCString, decodeTrigger, type MsgHeader } from './codec.js';
import {
  EXEC_PARAMS_SIZE,
  MAX_SERVICE_NAME_LEN,
  MsgType,
  TRIGGER_SERVICE_PARAMS3_SIZE,
  TRIGGER_SERVICE_PARAMS4_SIZE,
  TRIGGER_SERVICE_PARAMS_SIZE,
} from './constants.js';
import { QrexecProtocolError } from './errors.js';

/*
 * What qrexec-daemon accepts from an agent (reference §4.1 "Daemon-side
 * validation"): malformed framing ends the connection, a malformed request
 * is refused with MSG_SERVICE_REFUSED.
 */

const BASE_NAME_CHARS = /[^A-Za-z0-9_.-]/g;

/** Names are read byte-wise (latin1) so that each foreign byte becomes one `_`, as in C. */

/** Replaces every byte outside [A-Za-z0-9_.-] and `extra` with `_`, as upstream's sanitize_name. */
export function sanitizeName(name: string, extra = ''): string {
  return name.replace(BASE_NAME_CHARS, (ch) => (extra.includes(ch) ? ch : '_'));
}

export function sanitizeDomainName(name: string): string {
  return sanitizeName(name, '@:');
}

/** The sanitised service name, or undefined when it must be refused (empty, or starting with `+`). */
export function validateServiceName(name: string): string | undefined {
  if (name === '' || name.startsWith('+')) return undefined;
  return sanitizeName(name, '+');
}

/** The request id if it is [A-Za-z0-9_.- ]*, NUL-terminated and NUL-padded; undefined otherwise. */
export function validateRequestId(field: Buffer): string | undefined {
  const nul = field.indexOf(0);
  if (nul < 0) return undefined;
  const ident = field.subarray(0, nul).toString('latin1');
  if (!/^[A-Za-z0-9_. -]*$/.test(ident)) return undefined;
  if (field.subarray(nul).some((byte) => byte !== 0)) return undefined;
  return ident;
}

/**
 * Framing check of a message an agent sent on the control vchan. Throws for
 * anything the daemon must not continue after: unknown types, sizes out of
 * range, trigger versions the negotiated protocol does not have.
 */
export function checkAgentHeader(header: MsgHeader, protocolVersion: number): void {
  const fail = (why: string): never => {
    throw new QrexecProtocolError(
      `agent sent ${why} (type 0x${header.type.toString(16)}, len ${header.len})`,
    );
  };
  switch (header.type) {
    case MsgType.TRIGGER_SERVICE:
      if (protocolVersion >= 3) fail('the old MSG_TRIGGER_SERVICE under protocol ≥ 3');
      if (header.len !== TRIGGER_SERVICE_PARAMS_SIZE) fail('an invalid MSG_TRIGGER_SERVICE');
      return;
    case MsgType.TRIGGER_SERVICE3:
      if (protocolVersion < 3) fail('MSG_TRIGGER_SERVICE3 under protocol < 3');
      checkTriggerLength(header.len, TRIGGER_SERVICE_PARAMS3_SIZE, fail);
      return;
    case MsgType.TRIGGER_SERVICE4:
      if (protocolVersion < 4) fail('MSG_TRIGGER_SERVICE4 under protocol < 4');
      checkTriggerLength(header.len, TRIGGER_SERVICE_PARAMS4_SIZE, fail);
      return;
    case MsgType.CONNECTION_TERMINATED:
      if (header.len !== EXEC_PARAMS_SIZE) fail('an invalid MSG_CONNECTION_TERMINATED');
      return;
    default:
      fail('an unexpected message');
  }
}

function checkTriggerLength(len: number, fixed: number, fail: (why: string) => never): void {
  if (len <= fixed) fail('a trigger without a service name');
  if (len - fixed > MAX_SERVICE_NAME_LEN) fail('a too long service name');
}

export interface TriggerRequest {
  /** The source the caller asked to act as (TRIGGER_SERVICE4 `-s`), sanitised; empty when none. */
  readonly requestedSource: string;
  readonly target: string;
  readonly serviceAndArg: string;
  readonly requestId: string;
}

export type TriggerParseResult =
  | { readonly ok: true; readonly request: TriggerRequest }
  /** requestId is the peer's raw field: the refusal echoes it back unchanged, as upstream does. */
  | { readonly ok: false; readonly requestId: Buffer; readonly reason: string };

/** Validates the body of a trigger whose header passed checkAgentHeader. */
export function parseTrigger(type: number, payload: Buffer): TriggerParseResult {
  const version = type === MsgType.TRIGGER_SERVICE ? 'v1' : type === MsgType.TRIGGER_SERVICE3 ? 'v3' : 'v4';
  const params = decodeTrigger(version, payload);
  const refuse = (reason: string): TriggerParseResult => ({ ok: false, requestId: params.requestId, reason });
  const requestId = validateRequestId(params.requestId);
  if (requestId === undefined) return refuse('invalid request id');
  let service: string;
  if (params.version === 1) {
    service = readCString(params.serviceName.subarray(0, params.serviceName.length - 1), 'latin1');
  } else {
    const name = params.serviceName;
    if (name[name.length - 1] !== 0) return refuse('service name not NUL-terminated');
    if (name.indexOf(0) !== name.length - 1) return refuse('service name contains a NUL byte');
    service = name.subarray(0, name.length - 1).toString('latin1');
  }
  const serviceAndArg = validateServiceName(service);
  if (serviceAndArg === undefined) return refuse('empty service name or one starting with "+"');
  return {
    ok: true,
    request: {
      requestedSource: sanitizeDomainName(truncatedField(params.sourceDomain)),
      target: sanitizeDomainName(truncatedField(params.targetDomain)),
      serviceAndArg,
      requestId,
    },
  };
}

/** A fixed field read as upstream does after forcing its last byte to NUL. */
function truncatedField(field: Buffer): string {
  return field.length === 0 ? '' : readCString(field.subarray(0, field.length - 1), 'latin1');
}
