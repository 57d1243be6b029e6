import { describe, expect, it } from 'vitest';
import {
  MsgType,
  decodeExecParams,
  decodeExitCode,
  decodeHeader,
  decodePeerInfo,
  decodeTrigger,
  encodeExecParams,
  encodeExitCode,
  encodeHeader,
  encodeMessage,
  encodePeerInfo,
  encodeServiceConnect,
  encodeTrigger1,
  encodeTrigger3,
  encodeTrigger4,
  execCmdline,
  fixedCString,
  readCString,
} from '../src/index.js';

describe('qrexec message codec', () => {
  it('has upstream message type values', () => {
    expect(MsgType).toMatchObject({
      DATA_STDIN: 0x190,
      DATA_EXIT_CODE: 0x193,
      EXEC_CMDLINE: 0x200,
      SERVICE_REFUSED: 0x203,
      TRIGGER_SERVICE: 0x210,
      CONNECTION_TERMINATED: 0x211,
      TRIGGER_SERVICE4: 0x213,
      HELLO: 0x300,
    });
  });

  it('encodes msg_header as two little-endian uint32', () => {
    expect(encodeHeader(MsgType.HELLO, 4)).toEqual(Buffer.from([0x00, 0x03, 0, 0, 4, 0, 0, 0]));
    expect(decodeHeader(encodeHeader(0x213, 70000))).toEqual({ type: 0x213, len: 70000 });
    expect(() => decodeHeader(Buffer.alloc(7))).toThrow();
  });

  it('frames a message as header plus payload', () => {
    expect(encodeMessage(MsgType.DATA_STDOUT, Buffer.from('ab'))).toEqual(
      Buffer.from([0x91, 0x01, 0, 0, 2, 0, 0, 0, 0x61, 0x62]),
    );
    expect(encodeMessage(MsgType.DATA_STDIN)).toHaveLength(8);
  });

  it('round-trips exec_params with and without a command line', () => {
    const bare = encodeExecParams({ connectDomain: 3, connectPort: 513 });
    expect(bare).toEqual(Buffer.from([3, 0, 0, 0, 1, 2, 0, 0]));
    const withCmd = encodeExecParams({ connectDomain: 0, connectPort: 600 }, 'user:QUBESRPC a.B+ dom0');
    const decoded = decodeExecParams(withCmd);
    expect(decoded).toMatchObject({ connectDomain: 0, connectPort: 600 });
    expect(decoded.tail[decoded.tail.length - 1]).toBe(0);
    expect(execCmdline(decoded.tail)).toBe('user:QUBESRPC a.B+ dom0');
  });

  it('takes the last byte of a command line as its terminator, like upstream', () => {
    expect(execCmdline(Buffer.from('abcX'))).toBe('abc');
    expect(() => execCmdline(Buffer.alloc(0))).toThrow();
  });

  it('lays out MSG_SERVICE_CONNECT as exec_params plus a 32-byte ident', () => {
    const payload = encodeServiceConnect({ connectDomain: 5, connectPort: 514 }, 'SOCKET7');
    expect(payload).toHaveLength(40);
    expect(readCString(payload.subarray(8))).toBe('SOCKET7');
    expect(payload.subarray(8 + 7).every((b) => b === 0)).toBe(true);
  });

  it('refuses strings that do not fit their fixed field', () => {
    expect(fixedCString('a'.repeat(31), 32)).toHaveLength(32);
    expect(() => fixedCString('a'.repeat(32), 32)).toThrow(RangeError);
    expect(() => fixedCString('a\0b', 32)).toThrow(RangeError);
  });

  it('round-trips the three trigger_service_params versions', () => {
    const v1 = encodeTrigger1('work', 'SOCKET1', 'qubes.Filecopy');
    expect(v1).toHaveLength(128);
    const d1 = decodeTrigger('v1', v1);
    expect([readCString(d1.serviceName), readCString(d1.targetDomain), readCString(d1.requestId)]).toEqual([
      'qubes.Filecopy',
      'work',
      'SOCKET1',
    ]);

    const v3 = encodeTrigger3('@default', 'SOCKET2', 'qubes.Gpg+key');
    expect(v3).toHaveLength(96 + 'qubes.Gpg+key'.length + 1);
    const d3 = decodeTrigger('v3', v3);
    expect(readCString(d3.targetDomain)).toBe('@default');
    expect(d3.serviceName.toString()).toBe('qubes.Gpg+key\0');

    const v4 = encodeTrigger4('mgmt', 'work', 'SOCKET', 'admin.vm.List');
    expect(v4).toHaveLength(160 + 14);
    const d4 = decodeTrigger('v4', v4);
    expect(readCString(d4.sourceDomain)).toBe('mgmt');
    expect(readCString(d4.targetDomain)).toBe('work');
    expect(readCString(d4.requestId)).toBe('SOCKET');
    expect(d4.serviceName.toString()).toBe('admin.vm.List\0');
  });

  it('rejects trigger payloads of the wrong size', () => {
    expect(() => decodeTrigger('v1', Buffer.alloc(127))).toThrow();
    expect(() => decodeTrigger('v3', Buffer.alloc(96))).toThrow();
    expect(() => decodeTrigger('v4', Buffer.alloc(160))).toThrow();
  });

  it('round-trips peer_info and exit codes', () => {
    expect(decodePeerInfo(encodePeerInfo(4))).toBe(4);
    expect(() => decodePeerInfo(Buffer.alloc(8))).toThrow();
    expect(encodeExitCode(127)).toEqual(Buffer.from([0x7f, 0, 0, 0]));
    expect(decodeExitCode(encodeExitCode(-1))).toBe(-1);
  });
});
