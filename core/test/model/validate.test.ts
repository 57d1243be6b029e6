import { describe, expect, it } from 'vitest';

import { ProtocolError, QubesValueError, pyRepr } from '../../src/model/errors.js';
import { isXmlText, validateName, validateNumber } from '../../src/model/validate.js';

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
