import type { VmmEvent } from './vmm.js';

interface Listener {
  readonly items: VmmEvent[];
  wake: (() => void) | undefined;
}

/**
 * For backends: fans their events out to every `Vmm.events()` iterable. A listener is registered when
 * `subscribe()` is called, not at its first `next()`, so nothing published in between is lost.
 */
export class EventHub {
  private readonly listeners = new Set<Listener>();
  private closed = false;

  publish(event: VmmEvent): void {
    for (const l of this.listeners) {
      l.items.push(event);
      l.wake?.();
    }
  }

  close(): void {
    this.closed = true;
    for (const l of this.listeners) l.wake?.();
  }

  subscribe(): AsyncIterable<VmmEvent> {
    const listener: Listener = { items: [], wake: undefined };
    this.listeners.add(listener);
    const next = async (): Promise<IteratorResult<VmmEvent>> => {
      for (;;) {
        const item = listener.items.shift();
        if (item) return { value: item, done: false };
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
