import { describe, expect, it } from 'vitest';

import { checkCustomPersist, customPersistEntry } from '../../src/model/custom-persist.js';

/** Upstream's custom_persist extension, its tests' values among them (qubes/tests/ext.py). */
describe('custom-persist features', () => {
  it.for([
    ['custom-persist.home', '/home'],
    ['custom-persist.test', 'dir:root:root:0755:/var/test'],
    ['custom-persist.test', 'file:root:root:755:/var/test'],
    ['custom-persist.test', 'file:root:root:755:/var/test:dir:with:colon'],
    ['custom-persist.test', 'file:root:root:0o7777:/x'],
    ['custom-persist.test', 'file:::0:/x'],
    [`custom-persist.${'X'.repeat(54)}`, '/x'],
  ] as const)('takes %s=%s, exported under /persist/', ([feature, value]) => {
    expect(() => checkCustomPersist(feature, value)).not.toThrow();
    expect(customPersistEntry(feature, value)).toEqual([`/persist/${feature.slice(15)}`, value]);
  });

  it.for([
    ['custom-persist.', '/test', 'custom-persist key cannot be empty'],
    [
      `custom-persist.${'X'.repeat(55)}`,
      '/test',
      `custom-persist key is too long (max 54), ignoring: ${'X'.repeat(55)}`,
    ],
    ['custom-persist.test', 'var/test', "invalid value format: 'var/test'"],
    ['custom-persist.test', '', "invalid value format: ''"],
    [
      'custom-persist.test',
      'dir:root:root:0755:var/test',
      "invalid value format: 'dir:root:root:0755:var/test'",
    ],
    [
      'custom-persist.test',
      'link:root:root:0755:/x',
      "invalid resource type option 'link' in value 'link:root:root:0755:/x'",
    ],
    [
      'custom-persist.test',
      'file:root:root:9750:/var/test',
      "invalid mode option '9750' in value 'file:root:root:9750:/var/test'",
    ],
    [
      'custom-persist.test',
      'file:root:root:-755:/var/test',
      "invalid mode option '-755' in value 'file:root:root:-755:/var/test'",
    ],
    [
      'custom-persist.test',
      'file:root:root:17777:/x',
      "invalid mode option '17777' in value 'file:root:root:17777:/x'",
    ],
    ['custom-persist.test', 'file:root:root::/x', "invalid mode option '' in value 'file:root:root::/x'"],
  ] as const)('refuses %s=%j in upstream words', ([feature, value, message]) => {
    expect(() => checkCustomPersist(feature, value)).toThrow(message);
    expect(customPersistEntry(feature, value)).toBeUndefined();
  });

  it('leaves other features alone', () => {
    expect(() => checkCustomPersist('custom-persistence', 'x')).not.toThrow();
    expect(customPersistEntry('service.cups', '1')).toBeUndefined();
  });
});
