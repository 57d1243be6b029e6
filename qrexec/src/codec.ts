import {
  EXEC_PARAMS_SIZE,
  MSG_HEADER_SIZE,
  PEER_INFO_SIZE,
  SERVICE_PARAMS_SIZE,
  TRIGGER_SERVICE_PARAMS3_SIZE,
  TRIGGER_SERVICE_PARAMS4_SIZE,
  TRIGGER_SERVICE_PARAMS_SIZE,
} from './constants.js';
import { QrexecProtocolError } from './errors.js';

/*
 * The C structs of libqrexec/qrexec.h, little-endian, strings as NUL-padded
 * fixed fields. Decoders take what the peer sent and keep the raw bytes where
 * validation (validate.ts) has to look at them.
 */

export interface MsgHeader {
  readonly type: number;
  readonly len: number;
}

export interface ExecParams {
  readonly connectDomain: number;
  readonly connectPort: number;
}

export function encodeHeader(type: number, len: number): Buffer {
  const buf = Buffer.alloc(MSG_HEADER_SIZE);
  buf.writeUInt32LE(type, 0);
  buf.writeUInt32LE(len, 4);
  return buf;
}

export function decodeHeader(buf: Buffer): MsgHeader {
  if (buf.length < MSG_HEADER_SIZE) throw new QrexecProtocolError('short msg_header');
  return { type: buf.readUInt32LE(0), len: buf.readUInt32LE(4) };
}

export function encodeMessage(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader(type, payload.length), payload]);
}

/** A string into a fixed char[size]; it must leave room for the terminating NUL. */
export function fixedCString(value: string, size: number): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length >= size || bytes.includes(0)) {
    throw new RangeError(`"${value}" does not fit a char[${size}] field`);
  }
  const field = Buffer.alloc(size);
  bytes.copy(field);
  return field;
}

/** The string in a char[] field up to its first NUL (the whole field when it has none). */
export function readCString(field: Buffer, encoding: BufferEncoding = 'utf8'): string {
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? field.length : nul).toString(encoding);
}

export function encodeExecParams(params: ExecParams, cmdline?: string): Buffer {
  const head = Buffer.alloc(EXEC_PARAMS_SIZE);
  head.writeUInt32LE(params.connectDomain, 0);
  head.writeUInt32LE(params.connectPort, 4);
  if (cmdline === undefined) return head;
  return Buffer.concat([head, Buffer.from(cmdline, 'utf8'), Buffer.from([0])]);
}

export interface DecodedExecParams extends ExecParams {
  /** The bytes after the fixed part: a NUL-terminated command line or a service_params. */
  readonly tail: Buffer;
}

export function decodeExecParams(payload: Buffer): DecodedExecParams {
  if (payload.length < EXEC_PARAMS_SIZE) throw new QrexecProtocolError('short exec_params');
  return {
    connectDomain: payload.readUInt32LE(0),
    connectPort: payload.readUInt32LE(4),
    tail: payload.subarray(EXEC_PARAMS_SIZE),
  };
}

/** The command line of an exec_params tail; like upstream, the last byte is taken as the terminator. */
export function execCmdline(tail: Buffer): string {
  if (tail.length === 0) throw new QrexecProtocolError('exec_params without a command line');
  return readCString(tail.subarray(0, tail.length - 1));
}

export function encodeServiceParams(ident: string): Buffer {
  return fixedCString(ident, SERVICE_PARAMS_SIZE);
}

export function encodeServiceConnect(params: ExecParams, ident: string): Buffer {
  return Buffer.concat([encodeExecParams(params), encodeServiceParams(ident)]);
}

export interface TriggerParams {
  readonly version: 1 | 3 | 4;
  /** Only in MSG_TRIGGER_SERVICE4; empty when the caller named no source. */
  readonly sourceDomain: Buffer;
  readonly targetDomain: Buffer;
  readonly requestId: Buffer;
  /** Version 1: the char[64] field; versions 3 and 4: the NUL-terminated tail. */
  readonly serviceName: Buffer;
}

export function encodeTrigger1(target: string, requestId: string, service: string): Buffer {
  return Buffer.concat([fixedCString(service, 64), fixedCString(target, 32), encodeServiceParams(requestId)]);
}

export function encodeTrigger3(target: string, requestId: string, service: string): Buffer {
  return Buffer.concat([fixedCString(target, 64), encodeServiceParams(requestId), cString(service)]);
}

export function encodeTrigger4(source: string, target: string, requestId: string, service: string): Buffer {
  return Buffer.concat([
    fixedCString(source, 64),
    fixedCString(target, 64),
    encodeServiceParams(requestId),
    cString(service),
  ]);
}

/** Splits a trigger payload into its fields; checks sizes only (validate.ts judges contents). */
export function decodeTrigger(type: 'v1' | 'v3' | 'v4', payload: Buffer): TriggerParams {
  switch (type) {
    case 'v1':
      if (payload.length !== TRIGGER_SERVICE_PARAMS_SIZE)
        throw new QrexecProtocolError('bad trigger_service_params');
      return {
        version: 1,
        sourceDomain: Buffer.alloc(0),
        serviceName: payload.subarray(0, 64),
        targetDomain: payload.subarray(64, 96),
        requestId: payload.subarray(96, 128),
      };
    case 'v3':
      if (payload.length <= TRIGGER_SERVICE_PARAMS3_SIZE)
        throw new QrexecProtocolError('bad trigger_service_params3');
      return {
        version: 3,
        sourceDomain: Buffer.alloc(0),
        targetDomain: payload.subarray(0, 64),
        requestId: payload.subarray(64, 96),
        serviceName: payload.subarray(96),
      };
    case 'v4':
      if (payload.length <= TRIGGER_SERVICE_PARAMS4_SIZE)
        throw new QrexecProtocolError('bad trigger_service_params4');
      return {
        version: 4,
        sourceDomain: payload.subarray(0, 64),
        targetDomain: payload.subarray(64, 128),
        requestId: payload.subarray(128, 160),
        serviceName: payload.subarray(160),
      };
  }
}

export function encodePeerInfo(version: number): Buffer {
  const buf = Buffer.alloc(PEER_INFO_SIZE);
  buf.writeUInt32LE(version, 0);
  return buf;
}

export function decodePeerInfo(payload: Buffer): number {
  if (payload.length !== PEER_INFO_SIZE) throw new QrexecProtocolError('bad peer_info size');
  return payload.readUInt32LE(0);
}

export function encodeExitCode(code: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(code, 0);
  return buf;
}

export function decodeExitCode(payload: Buffer): number {
  if (payload.length !== 4) throw new QrexecProtocolError('bad exit code size');
  return payload.readInt32LE(0);
}

function cString(value: string): Buffer {
  return Buffer.concat([Buffer.from(value, 'utf8'), Buffer.from([0])]);
}
