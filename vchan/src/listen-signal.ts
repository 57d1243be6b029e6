import type { VchanState } from '@odyssey/hal';

/**
 * listen()'s signal: aborting while the server still waits for its client
 * destroys it (which rejects `connected`); once connected, the signal no longer matters.
 */
export function stopWaitingOnAbort(
  vchan: { state(): VchanState; destroy(): void },
  connected: Promise<unknown>,
  signal: AbortSignal | undefined,
): void {
  if (!signal) return;
  const abort = (): void => {
    if (vchan.state() === 'waiting') vchan.destroy();
  };
  if (signal.aborted) abort();
  signal.addEventListener('abort', abort, { once: true });
  const forget = (): void => signal.removeEventListener('abort', abort);
  connected.then(forget, forget);
}
