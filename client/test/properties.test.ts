import { describe, expect, it } from 'vitest';

import {
  QubesDaemonCommunicationError,
  displayValue,
  parseAllProperties,
  parsePropertyLines,
  parsePropertyValue,
  parseTypedText,
  typedValue,
} from '../src/index.js';
import { DOM0_GETALL } from './fixtures/system.js';

describe('property values', () => {
  it('parses Get replies (captured forms)', () => {
    expect(parsePropertyValue('default=False type=str work')).toEqual({
      isDefault: false,
      type: 'str',
      value: 'work',
    });
    expect(parsePropertyValue('default=True type=int -1')).toEqual({
      isDefault: true,
      type: 'int',
      value: '-1',
    });
    expect(parsePropertyValue('default=False type=vm ')).toEqual({ isDefault: false, type: 'vm', value: '' });
    expect(parsePropertyValue('default=False type=str a b  c')).toMatchObject({ value: 'a b  c' });
  });

  it('parses GetDefault replies', () => {
    expect(parseTypedText('type=int 400')).toEqual({ type: 'int', value: '400' });
  });

  it('rejects malformed replies', () => {
    expect(() => parsePropertyValue('nonsense')).toThrow(QubesDaemonCommunicationError);
    expect(() => parsePropertyValue('default=True type=float 1.5')).toThrow(
      'Received invalid value type: float',
    );
  });

  it('parses GetAll with its escaping of backslash and newline', () => {
    const all = parseAllProperties(
      'kernelopts default=False type=str opt1\\nopt2\\\\x\nname default=True type=str w\n',
    );
    expect(all.get('kernelopts')?.value).toBe('opt1\nopt2\\x');
    expect([...all.keys()]).toEqual(['kernelopts', 'name']);
  });

  it('parses only the wanted lines of a GetAll, still rejecting a malformed line or an escaped name', () => {
    const lines = [
      'kernelopts default=False type=str a\\\\b',
      'name default=True type=str w',
      'netvm default=True type=vm ',
    ];
    const some = parsePropertyLines(lines, new Set(['kernelopts', 'netvm', 'absent']));
    expect([...some]).toEqual([
      ['kernelopts', { isDefault: false, type: 'str', value: 'a\\b' }],
      ['netvm', { isDefault: true, type: 'vm', value: '' }],
    ]);
    expect(() => parsePropertyLines([...lines, 'broken'], new Set(['name']))).toThrow(
      'Invalid property line received: broken',
    );
    expect(() => parsePropertyLines(['na\\nme default=True type=str w'])).toThrow(
      QubesDaemonCommunicationError,
    );
    expect(() => parsePropertyLines(['name default=True type=str a\\x'])).toThrow('Invalid escape sequence');
  });

  it('keeps server order and empty values of a captured GetAll', () => {
    const all = parseAllProperties(DOM0_GETALL);
    expect([...all.keys()].slice(0, 3)).toEqual(['devices_denied', 'icon', 'include_in_backups']);
    expect(all.get('devices_denied')).toEqual({ isDefault: true, type: 'str', value: '' });
    expect(all.get('default_dispvm')).toEqual({ isDefault: true, type: 'vm', value: '' });
  });

  it('converts to typed and displayed values like the Python client', () => {
    expect(typedValue({ type: 'int', value: '4096' })).toBe(4096);
    expect(typedValue({ type: 'int', value: '' })).toBeUndefined();
    expect(typedValue({ type: 'bool', value: 'True' })).toBe(true);
    expect(typedValue({ type: 'vm', value: '' })).toBeNull();
    expect(displayValue({ type: 'vm', value: '' })).toBe('None');
    expect(displayValue({ type: 'bool', value: 'False' })).toBe('False');
    expect(displayValue({ type: 'str', value: '' })).toBe('');
  });
});
