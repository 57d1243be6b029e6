import { describe, expect, it } from 'vitest';

import { EVENT_QUEUE_MAX, EventHub, EventsLostError, type VmmEvent } from '../src/index.js';

const started = (i: number): VmmEvent => ({ type: 'started', name: `d${i}` });

/** What the hub holds for its subscribers: the listeners and their queued events. */
function held(hub: EventHub): { listeners: number; queued: number } {
  const listeners = (hub as unknown as { listeners: Set<{ items: unknown[] }> }).listeners;
  return { listeners: listeners.size, queued: [...listeners].reduce((n, l) => n + l.items.length, 0) };
}

describe('EventHub', () => {
  it('gives a subscriber that keeps up every event, in order, up to the bound', async () => {
    const hub = new EventHub();
    const it = hub.subscribe()[Symbol.asyncIterator]();
    for (let i = 0; i < EVENT_QUEUE_MAX; i++) hub.publish(started(i));
    expect(held(hub)).toEqual({ listeners: 1, queued: EVENT_QUEUE_MAX });
    for (let i = 0; i < EVENT_QUEUE_MAX; i++) expect((await it.next()).value).toEqual(started(i));
    hub.close();
    expect((await it.next()).done).toBe(true);
  });

  it('drops a subscriber that falls behind by more, keeping nothing for it, and fails its iteration', async () => {
    const hub = new EventHub();
    const slow = hub.subscribe()[Symbol.asyncIterator]();
    for (let i = 0; i < 3 * EVENT_QUEUE_MAX; i++) hub.publish(started(i));
    expect(held(hub)).toEqual({ listeners: 0, queued: 0 });
    await expect(slow.next()).rejects.toBeInstanceOf(EventsLostError);
    // A new subscription gets what comes after it.
    const again = hub.subscribe()[Symbol.asyncIterator]();
    hub.publish(started(-1));
    expect((await again.next()).value).toEqual(started(-1));
  });

  it('fails a subscriber waiting for its next event once a burst outruns it', async () => {
    const hub = new EventHub();
    const waiting = hub.subscribe()[Symbol.asyncIterator]();
    const next = waiting.next();
    // One synchronous burst: the waiter gets no turn before the bound is passed.
    for (let i = 0; i <= EVENT_QUEUE_MAX; i++) hub.publish(started(i));
    await expect(next).rejects.toBeInstanceOf(EventsLostError);
    expect(held(hub)).toEqual({ listeners: 0, queued: 0 });
  });
});
