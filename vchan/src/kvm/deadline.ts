import { timerDelay } from '@odyssey/hal';

/** A signal that aborts `ms` from now: a connect's deadline. */
export function after(ms: number): AbortSignal {
  return AbortSignal.timeout(timerDelay(ms));
}

/**
 * `work`'s result, or `givenUp` once `signal` aborts, whichever comes first. For work shared with
 * others (a channel's one dial) that this caller may stop waiting for without stopping it.
 */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, givenUp: T): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.resolve(givenUp);
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => resolve(givenUp);
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}
