import { describe, expect, it } from 'vitest';

import { formatBytes, parseSize, QubesError } from '../src/index.js';

describe('parseSize', () => {
  it('reads plain bytes and upstream’s units, case-insensitively', () => {
    expect(parseSize('1024')).toBe(1024n);
    expect(parseSize('3GiB')).toBe(3221225472n);
    expect(parseSize('512MiB')).toBe(536870912n);
    expect(parseSize('512mi')).toBe(536870912n);
    expect(parseSize(' 10 G ')).toBe(10000000000n);
    expect(parseSize('4KB')).toBe(4000n);
    expect(parseSize('4k')).toBe(4000n);
    expect(parseSize('2TiB')).toBe(2199023255552n);
  });

  it('refuses anything else with upstream’s message', () => {
    for (const bad of ['', '1.5GiB', 'GiB', '3 lots', '-1', '3B']) {
      expect(() => parseSize(bad)).toThrow(QubesError);
    }
    expect(() => parseSize('3 lots')).toThrow('Invalid size: 3 lots.');
  });
});

describe('formatBytes', () => {
  it('uses binary units with one decimal', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64.0 MiB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GiB');
  });
});
