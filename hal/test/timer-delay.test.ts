import { describe, expect, it } from 'vitest';
import { MAX_TIMER_MS, timerDelay } from '../src/timer-delay.js';

describe('timerDelay', () => {
  it('keeps a delay a timer takes, in whole milliseconds', () => {
    expect(timerDelay(0)).toBe(0);
    expect(timerDelay(1500)).toBe(1500);
    expect(timerDelay(0.2)).toBe(1);
    expect(timerDelay(MAX_TIMER_MS)).toBe(2147483647);
  });

  it('clamps what a timer would fire after 1 ms instead', () => {
    expect(timerDelay(MAX_TIMER_MS + 1)).toBe(MAX_TIMER_MS);
    expect(timerDelay(1e300)).toBe(MAX_TIMER_MS);
    expect(timerDelay(Infinity)).toBe(MAX_TIMER_MS);
    expect(timerDelay(-5)).toBe(0);
  });

  it('fires a clamped timer no sooner than a long one', async () => {
    let fired = false;
    const t = setTimeout(() => (fired = true), timerDelay(2 ** 40));
    await new Promise((r) => setTimeout(r, 20));
    clearTimeout(t);
    expect(fired).toBe(false);
  });
});
