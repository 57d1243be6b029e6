import { describe, expect, it } from 'vitest';

import { ProtocolError, QubesValueError, pyRepr } from '../../src/model/errors.js';
import { isXmlText, parsePythonInt, validateName, validateNumber } from '../../src/model/validate.js';

describe('names, numbers, reprs', () => {
  it.each([
    ['a'.repeat(32), 'VM name must be shorter than 32 characters'],
    ['_x', 'VM name cannot start with hyphen, underscore, dot or numbers'],
    ['9x', 'VM name cannot start with hyphen, underscore, dot or numbers'],
    ['a b', 'VM name contains illegal characters'],
    ['Domain-0', "VM name cannot be 'Domain-0'"],
    ['none', "VM name cannot be 'none' nor 'default'"],
    ['x-dm', 'VM name cannot end with -dm'],
  ])('refuses the name %s', (name, message) => {
    expect(() => validateName(name)).toThrow(new QubesValueError(message));
  });

  it('accepts upstream-valid names', () => {
    for (const n of ['a', 'work', 'sys-net', 'A.b_c-1', 'a'.repeat(31)])
      expect(() => validateName(n)).not.toThrow();
  });

  it.each([
    ['12a', 'X contains non ASCII digits'],
    ['1'.repeat(20), 'X is bigger than 19 decimal digits'],
    ['007', 'X contains spurious leading zeros'],
  ])('refuses the number %s', (n, message) => {
    expect(() => validateNumber(n, 'x')).toThrow(new ProtocolError(message));
  });

  it('reads numbers as Python ints: numbers while exact, bigints beyond 2^53, no negative zero', () => {
    expect(validateNumber('9007199254740991', 'x')).toBe(9007199254740991);
    expect(validateNumber('9999999999999999999', 'x')).toBe(9999999999999999999n);
    expect(validateNumber('-9007199254740993', 'x', true)).toBe(-9007199254740993n);
    expect(Object.is(validateNumber('-0', 'x', true), 0)).toBe(true);
  });

  it.each([
    ['007', 7],
    ['+5', 5],
    [' \t\n\x0b\x0c\r-5 ', -5],
    ['1_000', 1000],
    ['-0', 0],
    ['12345678901234567890123', 12345678901234567890123n],
  ])('reads %j as int() does', (s, n) => {
    const got = parsePythonInt(s);
    expect(got).toBe(n);
    if (n === 0) expect(Object.is(got, 0)).toBe(true);
  });

  it.each(['', ' ', '0x10', '1__0', '_1', '1_', '+ 5', '--5', '5.0', '1e3', '\x1c5'])(
    'refuses %j as int() does',
    (s) => {
      expect(parsePythonInt(s)).toBeUndefined();
    },
  );

  it('converts at most 4300 digits as int() does, leading zeros counted and underscores not', () => {
    expect(parsePythonInt(`${'0'.repeat(4299)}1`)).toBe(1);
    expect(parsePythonInt(`${'1_'.repeat(4299)}1`)).toBe(BigInt('1'.repeat(4300)));
    expect(parsePythonInt(`${'0'.repeat(4300)}1`)).toBeUndefined();
  });

  it('reads ASCII only: every API payload is refused as non-ASCII before int() (which reads ٣ as 3)', () => {
    expect(parsePythonInt('\u0663')).toBeUndefined();
  });

  it('formats like Python repr', () => {
    expect(pyRepr('work')).toBe("'work'");
    expect(pyRepr("it's")).toBe('"it\'s"');
    expect(pyRepr('a\nb\\')).toBe("'a\\nb\\\\'");
  });

  it('tells what XML 1.0 can hold', () => {
    for (const ok of ['', 'a\tb\nc\rd', '\x7f', '\u00e9\ud83d\ude00', '\ufffd'])
      expect(isXmlText(ok), JSON.stringify(ok)).toBe(true);
    for (const bad of [
      '\x00',
      '\x08',
      '\x0b',
      '\x0c',
      '\x0e',
      '\x1f',
      '\ufffe',
      '\uffff',
      'a\ud800',
      '\udc00b',
    ])
      expect(isXmlText(bad), JSON.stringify(bad)).toBe(false);
  });
});
