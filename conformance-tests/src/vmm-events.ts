import type { Vmm, VmmEvent } from '@odyssey/hal';

/** How long a hal check waits for the event its action (or the guest) causes. */
const EVENT_TIMEOUT_MS = 60_000;

/**
 * Subscribes to `vmm.events()` now (before the action), and `next(matches)` waits for the first
 * later event that matches. The failure names what did come, so a backend author sees what is off.
 */
export function watchVmm(vmm: Vmm): {
  next(matches: (ev: VmmEvent) => boolean, what: string): Promise<VmmEvent>;
  /** Every event from now until the iterable ends (as close() must end it); fails when it does not. */
  rest(after: string): Promise<VmmEvent[]>;
  stop(): void;
} {
  const iterator = vmm.events()[Symbol.asyncIterator]();
  const seen: VmmEvent[] = [];
  let ended = false;
  const next: (matches: (ev: VmmEvent) => boolean, what: string) => Promise<VmmEvent> = async (
    matches,
    what,
  ) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), EVENT_TIMEOUT_MS);
    });
    try {
      for (;;) {
        if (ended) throw new Error(`events() ended before ${what} (seen: ${JSON.stringify(seen)})`);
        const item = await Promise.race([iterator.next(), timeout]);
        if (item === 'timeout')
          throw new Error(
            `events() yielded no ${what} within ${EVENT_TIMEOUT_MS} ms (seen: ${JSON.stringify(seen)})`,
          );
        if (item.done) {
          ended = true;
          continue;
        }
        seen.push(item.value);
        if (matches(item.value)) return item.value;
      }
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    next,
    rest: async (after) => {
      const from = seen.length;
      await next(() => false, 'the end').catch((e: unknown) => {
        if (!ended)
          throw new Error(
            `events() did not end after ${after}: ${e instanceof Error ? e.message : String(e)}`,
          );
      });
      return seen.slice(from);
    },
    stop: () => void iterator.return?.(),
  };
}
