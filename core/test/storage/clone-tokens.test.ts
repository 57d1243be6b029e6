import { describe, expect, it } from 'vitest';

import { QubesVolumeCopyTokenNotFoundError } from '../../src/model/errors.js';
import { CloneTokens, randomToken } from '../../src/storage/clone-tokens.js';

describe('CloneTokens', () => {
  it('issues 32-char [A-Za-z0-9] tokens that do not repeat', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = randomToken();
      expect(t).toMatch(/^[A-Za-z0-9]{32}$/);
      seen.add(t);
    }
    expect(seen.size).toBe(2000);
  });

  it('uses the whole alphabet roughly evenly', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) for (const c of randomToken()) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    const expected = (2000 * 32) / 62;
    for (const n of counts.values()) expect(Math.abs(n - expected)).toBeLessThan(expected * 0.25);
  });

  it('is single use', () => {
    const tokens = new CloneTokens<string>();
    const t = tokens.issue('vol-a');
    expect(tokens.consume(t)).toBe('vol-a');
    expect(() => tokens.consume(t)).toThrow(QubesVolumeCopyTokenNotFoundError);
    expect(tokens.size).toBe(0);
  });

  it('rejects wrong, truncated, extended and empty tokens', () => {
    const tokens = new CloneTokens<string>();
    const t = tokens.issue('vol-a');
    const flipped = (t[0] === 'A' ? 'B' : 'A') + t.slice(1);
    for (const bad of [flipped, t.slice(0, 31), `${t}x`, '', 'badtoken']) {
      expect(() => tokens.consume(bad)).toThrow(QubesVolumeCopyTokenNotFoundError);
    }
    expect(tokens.consume(t)).toBe('vol-a');
  });

  it('carries upstream message text', () => {
    const tokens = new CloneTokens<string>();
    expect(() => tokens.consume('x')).toThrow("'Token to clone volume of qube was not found'");
  });

  it('expires after the TTL', () => {
    let now = 1_000;
    const tokens = new CloneTokens<string>({ ttlMs: 500, now: () => now });
    const a = tokens.issue('a');
    const b = tokens.issue('b');
    now += 499;
    expect(tokens.consume(a)).toBe('a');
    now += 1;
    expect(() => tokens.consume(b)).toThrow(QubesVolumeCopyTokenNotFoundError);
  });

  it('keeps tokens apart and can revoke by value', () => {
    const tokens = new CloneTokens<string>();
    const a = tokens.issue('a');
    const b = tokens.issue('b');
    const c = tokens.issue('c');
    tokens.revokeWhere((v) => v === 'b');
    expect(tokens.consume(c)).toBe('c');
    expect(() => tokens.consume(b)).toThrow(QubesVolumeCopyTokenNotFoundError);
    expect(tokens.consume(a)).toBe('a');
  });
});
