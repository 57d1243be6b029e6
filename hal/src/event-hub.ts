import type { VmmEvent } from './vmm.js';

/**
 * How many events one subscriber may fall behind by. Events come from the hypervisor as fast as
 * domains change; a consumer that stalls (core awaits each event's handling) must not make the
 * backend keep every later one.
 */
export const EVENT_QUEUE_MAX = 4096;

/**
 * A subscriber fell more than EVENT_QUEUE_MAX events behind and later events were dropped: the
 * states it knows may be stale, so it reads them again (and subscribes again) instead of trusting
 * the rest of a stream with a gap in it.
 */
export class EventsLostError extends Error {
  override name = 'EventsLostError';
}

interface Listener {
  items: VmmEvent[];
  lost: boolean;
  wake: (() => void) | undefined;
}

/**
 * For backends: fans their events out to every `Vmm.events()` iterable. A listener is registered when
 * `subscribe()` is called, not at its first `next()`, so nothing published in between is lost.
 * A listener more than EVENT_QUEUE_MAX events behind is dropped and its iteration fails with
 * EventsLostError.
 */
export class EventHub {
  private readonly listeners = new Set<Listener>();
  private closed = false;

  publish(event: VmmEvent): void {
    for (const l of this.listeners) {
      if (l.items.length < EVENT_QUEUE_MAX) l.items.push(event);
      else {
        l.items = [];
        l.lost = true;
        this.listeners.delete(l);
      }
      l.wake?.();
    }
  }

  close(): void {
    this.closed = true;
    for (const l of this.listeners) l.wake?.();
  }

  subscribe(): AsyncIterable<VmmEvent> {
    const listener: Listener = { items: [], lost: false, wake: undefined };
    this.listeners.add(listener);
    const next = async (): Promise<IteratorResult<VmmEvent>> => {
      for (;;) {
        const item = listener.items.shift();
        if (item) return { value: item, done: false };
        if (listener.lost)
          throw new EventsLostError(`more than ${EVENT_QUEUE_MAX} events were waiting to be read`);
        if (this.closed) {
          this.listeners.delete(listener);
          return { value: undefined, done: true };
        }
        await new Promise<void>((resolve) => (listener.wake = resolve));
        listener.wake = undefined;
      }
    };
    const stop = async (): Promise<IteratorResult<VmmEvent>> => {
      this.listeners.delete(listener);
      return { value: undefined, done: true };
    };
    return { [Symbol.asyncIterator]: () => ({ next, return: stop }) };
  }
}
