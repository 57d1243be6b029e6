import { describe, expect, it } from 'vitest';
import {
  MsgType,
  QrexecProtocolError,
  checkAgentHeader,
  encodeTrigger1,
  encodeTrigger3,
  encodeTrigger4,
  parseTrigger,
  sanitizeDomainName,
  sanitizeName,
  validateRequestId,
  validateServiceName,
} from '../src/index.js';

const id = (text: string): Buffer => {
  const field = Buffer.alloc(32);
  field.write(text, 'latin1');
  return field;
};

describe('daemon-side validation', () => {
  it('replaces characters outside the allowed sets with _', () => {
    expect(sanitizeName('a b/c;d')).toBe('a_b_c_d');
    expect(validateServiceName('qubes.Service+a/b c')).toBe('qubes.Service+a_b_c');
    expect(sanitizeDomainName('@dispvm:fedora-40 x')).toBe('@dispvm:fedora-40_x');
  });

  it('refuses empty service names and names starting with +', () => {
    expect(validateServiceName('')).toBeUndefined();
    expect(validateServiceName('+arg')).toBeUndefined();
  });

  it('accepts request ids of [A-Za-z0-9_.- ] that are NUL-terminated and NUL-padded', () => {
    expect(validateRequestId(id('SOCKET12'))).toBe('SOCKET12');
    expect(validateRequestId(id('a b.c-d_e'))).toBe('a b.c-d_e');
    expect(validateRequestId(id('bad/char'))).toBeUndefined();
    expect(validateRequestId(Buffer.alloc(32, 0x41))).toBeUndefined();
    const trailing = id('ok');
    trailing[10] = 0x41;
    expect(validateRequestId(trailing)).toBeUndefined();
  });

  it('kills the connection on framing the negotiated protocol does not allow', () => {
    const header = (type: number, len: number) => ({ type, len });
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE4, 170), 4)).not.toThrow();
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE4, 170), 3)).toThrow(QrexecProtocolError);
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE3, 100), 2)).toThrow(QrexecProtocolError);
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE, 128), 3)).toThrow(QrexecProtocolError);
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE, 128), 2)).not.toThrow();
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE, 127), 2)).toThrow(QrexecProtocolError);
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE4, 160), 4)).toThrow(
      /without a service name/,
    );
    expect(() => checkAgentHeader(header(MsgType.TRIGGER_SERVICE4, 160 + 65001), 4)).toThrow(/too long/);
    expect(() => checkAgentHeader(header(MsgType.CONNECTION_TERMINATED, 8), 4)).not.toThrow();
    expect(() => checkAgentHeader(header(MsgType.CONNECTION_TERMINATED, 9), 4)).toThrow(QrexecProtocolError);
    expect(() => checkAgentHeader(header(MsgType.EXEC_CMDLINE, 20), 4)).toThrow(/unexpected/);
    expect(() => checkAgentHeader(header(0x999, 0), 4)).toThrow(/unexpected/);
  });

  it('parses valid triggers of every version', () => {
    expect(
      parseTrigger(MsgType.TRIGGER_SERVICE4, encodeTrigger4('', 'work', 'SOCKET3', 'admin.vm.List')),
    ).toEqual({
      ok: true,
      request: { requestedSource: '', target: 'work', serviceAndArg: 'admin.vm.List', requestId: 'SOCKET3' },
    });
    const v3 = parseTrigger(MsgType.TRIGGER_SERVICE3, encodeTrigger3('@default', 'r', 'a.B+c'));
    expect(v3.ok && v3.request).toMatchObject({ target: '@default', serviceAndArg: 'a.B+c' });
    const v1 = parseTrigger(MsgType.TRIGGER_SERVICE, encodeTrigger1('dom0', 'r', 'a.B'));
    expect(v1.ok && v1.request).toMatchObject({ target: 'dom0', serviceAndArg: 'a.B' });
  });

  it('sanitises target and source names instead of refusing them', () => {
    const parsed = parseTrigger(MsgType.TRIGGER_SERVICE4, encodeTrigger4('mg mt', 'wo;rk', 'r', 'x.Y'));
    expect(parsed.ok && parsed.request).toMatchObject({ requestedSource: 'mg_mt', target: 'wo_rk' });
    // Byte-wise, as in C: each byte of a multi-byte character becomes one _.
    const utf8 = parseTrigger(MsgType.TRIGGER_SERVICE4, encodeTrigger4('', 'wörk', 'r', 'x.Y'));
    expect(utf8.ok && utf8.request.target).toBe('w__rk');
  });

  it('refuses malformed requests, echoing the raw request id', () => {
    const withNul = Buffer.concat([encodeTrigger4('', 'work', 'SOCKET5', 'a.B'), Buffer.from('x\0')]);
    const refused = parseTrigger(MsgType.TRIGGER_SERVICE4, withNul);
    expect(refused).toMatchObject({ ok: false, reason: 'service name contains a NUL byte' });
    expect(!refused.ok && refused.requestId.subarray(0, 7).toString()).toBe('SOCKET5');

    const unterminated = encodeTrigger4('', 'work', 'r', 'a.B');
    unterminated[unterminated.length - 1] = 0x41;
    expect(parseTrigger(MsgType.TRIGGER_SERVICE4, unterminated)).toMatchObject({ ok: false });

    expect(parseTrigger(MsgType.TRIGGER_SERVICE4, encodeTrigger4('', 'work', 'r', '+arg'))).toMatchObject({
      ok: false,
    });
    const badId = encodeTrigger4('', 'work', 'r', 'a.B');
    badId.write('bad/id', 128, 'latin1');
    expect(parseTrigger(MsgType.TRIGGER_SERVICE4, badId)).toMatchObject({
      ok: false,
      reason: 'invalid request id',
    });
  });
});
