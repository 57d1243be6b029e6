import { describe, expect, it } from 'vitest';

import {
  EMPTY_RESPONSE_MESSAGE,
  ProtocolError,
  QubesDaemonAccessError,
  QubesDaemonCommunicationError,
  QubesError,
  QubesFeatureNotFoundError,
  QubesNotFoundError,
  QubesVMNotFoundError,
  QubesValueError,
  QubesPropertyValueError,
  encodeRequest,
  parseResponse,
} from '../src/index.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');

describe('encodeRequest', () => {
  it('writes the dom0 client header with an always-present +', () => {
    expect(
      encodeRequest({ method: 'admin.vm.List', dest: 'dom0', arg: '', payload: Buffer.alloc(0) }),
    ).toEqual(bytes('admin.vm.List+ dom0 name dom0\0'));
    expect(
      encodeRequest({
        method: 'admin.vm.feature.Set',
        dest: 'work',
        arg: 'foo',
        payload: Buffer.from('bar'),
      }),
    ).toEqual(bytes('admin.vm.feature.Set+foo dom0 name work\0bar'));
  });
});

describe('parseResponse', () => {
  it('returns the body of an OK reply', () => {
    expect(parseResponse(bytes('0\0default=False type=str work')).toString()).toBe(
      'default=False type=str work',
    );
    expect(parseResponse(bytes('0\0'))).toHaveLength(0);
  });

  it('maps exception replies to classes that keep the upstream type name', () => {
    const cases: [string, string, new (...args: never[]) => QubesError][] = [
      ['QubesVMNotFoundError', "No such domain: 'nosuch'", QubesVMNotFoundError],
      ['QubesFeatureNotFoundError', 'Feature not set for domain newvm: nope', QubesFeatureNotFoundError],
      ['QubesPropertyValueError', 'memory must be positive', QubesPropertyValueError],
      ['ProtocolError', "no such method: 'admin.vm.Foo'", ProtocolError],
      ['QubesInvalidTagError', 'disallowed characters', ProtocolError],
    ];
    for (const [type, message, cls] of cases) {
      let caught: unknown;
      try {
        parseResponse(bytes(`2\0${type}\0\0${message}\0`));
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(cls);
      expect(caught).toMatchObject({ type, message, name: type });
    }
  });

  it('keeps the hierarchy callers rely on', () => {
    expect(() => parseResponse(bytes('2\0QubesPropertyValueError\0\0x\0'))).toThrow(QubesValueError);
    expect(() => parseResponse(bytes('2\0QubesTagNotFoundError\0\0x\0'))).toThrow(QubesNotFoundError);
  });

  it('gives unknown exception names a generic QubesError carrying the name', () => {
    try {
      parseResponse(bytes('2\0BackupCancelledError\0Traceback...\0cancelled\0'));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(QubesError);
      expect(err).toMatchObject({
        type: 'BackupCancelledError',
        message: 'cancelled',
        traceback: 'Traceback...',
      });
    }
  });

  it('reports an empty reply as QubesDaemonAccessError with upstream wording', () => {
    expect(() => parseResponse(Buffer.alloc(0))).toThrow(QubesDaemonAccessError);
    expect(() => parseResponse(Buffer.alloc(0))).toThrow(EMPTY_RESPONSE_MESSAGE);
    expect(EMPTY_RESPONSE_MESSAGE).toBe(
      'Got empty response from qubesd. See journalctl in dom0 for details.',
    );
  });

  it('reports anything else as QubesDaemonCommunicationError', () => {
    for (const reply of ['garbage', '3\0x', '2\0TruncatedError\0']) {
      expect(() => parseResponse(bytes(reply))).toThrow(QubesDaemonCommunicationError);
      expect(() => parseResponse(bytes(reply))).toThrow('Invalid response format');
    }
  });
});
