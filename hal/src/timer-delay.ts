/** The longest delay a Node timer takes: a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` as a timer takes it, whatever the number: whole milliseconds from 0 up to 2^31 - 1. */
export function timerDelay(ms: number): number {
  return Math.min(Math.max(0, Math.ceil(ms)), MAX_TIMER_MS);
}
