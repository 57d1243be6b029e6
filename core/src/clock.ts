import { timerDelay } from '@odyssey/hal';

/** Wall-clock time, ms since the epoch; the composition root picks it (tests pin it). */
export interface Clock {
  now(): number;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
}

/**
 * A property's seconds as a timer's delay. Upstream sleeps for any int it takes; a timer fires a
 * delay beyond ~24.8 days at once, so such a value waits the longest a timer can instead.
 */
export function timerMs(seconds: number): number {
  return timerDelay(seconds * 1000);
}
