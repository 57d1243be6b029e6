/** Wall-clock time, ms since the epoch; the composition root picks it (tests pin it). */
export interface Clock {
  now(): number;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
}
