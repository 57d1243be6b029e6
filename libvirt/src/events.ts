import { EventEmitter } from 'node:events';
import type { RpcConnection } from './connection.js';
import { Proc } from './procedures/numbers.js';
import { readDomain, writeDomain, type Domain } from './procedures/handles.js';
import { XdrReader } from './xdr.js';

/** virDomainEventID: which kind of event a callback receives. */
export const DomainEventId = { LIFECYCLE: 0 } as const;

/** virDomainEventType: the `event` of a lifecycle event. */
export const LifecycleEventType = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;

/** virDomainEventStoppedDetailType: why a domain stopped. */
export const StoppedDetail = {
  SHUTDOWN: 0,
  DESTROYED: 1,
  CRASHED: 2,
  MIGRATED: 3,
  SAVED: 4,
  FAILED: 5,
  FROM_SNAPSHOT: 6,
} as const;

/** virDomainEventStartedDetailType: how a domain started. */
export const StartedDetail = { BOOTED: 0, MIGRATED: 1, RESTORED: 2, FROM_SNAPSHOT: 3, WAKEUP: 4 } as const;

export interface DomainLifecycleEvent {
  domain: Domain;
  /** A `LifecycleEventType` value. */
  event: number;
  /** Per-event detail (`StartedDetail`, `StoppedDetail`, ...). */
  detail: number;
}

interface SubscriptionEvents {
  event: [DomainLifecycleEvent];
}

/**
 * How many events an iterating consumer may fall behind by. libvirt sends events as fast as
 * domains change, and a flood (a crash-looping domain, many domains at once) must not grow the
 * queue for as long as the consumer lags. One socket read holds at most 1024 of them (64 KiB of
 * 64-byte packets), all routed before the consumer's next turn; this leaves room for a few.
 */
export const LIFECYCLE_QUEUE_MAX = 4096;

/**
 * Iteration fell more than LIFECYCLE_QUEUE_MAX events behind, so events were dropped: what the
 * consumer knows of domain states may be stale, and it should read them again (and subscribe
 * again) instead of trusting the rest of a gapped stream.
 */
export class EventsLostError extends Error {
  override name = 'EventsLostError';
}

/**
 * Lifecycle events for one domain or for all of them. Listen for 'event', or iterate with
 * `for await`; iteration ends when the subscription is closed, and fails with EventsLostError
 * (closing the subscription) when the iterating consumer falls too far behind. 'event'
 * listeners run as each event arrives and queue nothing. It survives reconnects: the client
 * registers it again on the new connection.
 */
export class LifecycleSubscription
  extends EventEmitter<SubscriptionEvents>
  implements AsyncIterable<DomainLifecycleEvent>
{
  /** @internal The daemon's id for this callback on the current connection. */
  callbackId: number | undefined;
  private queue: DomainLifecycleEvent[] = [];
  private waiters: ((r: IteratorResult<DomainLifecycleEvent>) => void)[] = [];
  private iterating = false;
  private closed = false;
  private lost: EventsLostError | undefined;

  constructor(
    readonly domain: Domain | null,
    private readonly onClose: (sub: LifecycleSubscription) => Promise<void>,
  ) {
    super();
  }

  /** @internal */
  deliver(ev: DomainLifecycleEvent): void {
    if (this.closed) return;
    this.emit('event', ev);
    if (!this.iterating) return;
    const waiter = this.waiters.shift();
    if (waiter) waiter({ value: ev, done: false });
    else if (this.queue.length < LIFECYCLE_QUEUE_MAX) this.queue.push(ev);
    else this.overflow();
  }

  private overflow(): void {
    this.lost = new EventsLostError(
      `more than ${LIFECYCLE_QUEUE_MAX} lifecycle events were waiting to be read; later ones were dropped`,
    );
    // What was queued is history with a gap after it; the consumer re-reads states instead.
    this.queue = [];
    // Deregistering can only fail with the connection, which drops the callback anyway.
    this.close().catch(() => undefined);
  }

  /** Deregisters the callback from the daemon and ends iteration. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
    await this.onClose(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<DomainLifecycleEvent> {
    // Events are only queued once someone iterates, so pure 'event' listeners buffer nothing.
    this.iterating = true;
    return {
      next: () => {
        const ev = this.queue.shift();
        if (ev) return Promise.resolve({ value: ev, done: false });
        if (this.lost) return Promise.reject(this.lost);
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.waiters.push(resolve));
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }
}

/** Keeps domain event callbacks registered with the daemon, across reconnects. */
export class DomainEventRegistry {
  private readonly subs = new Set<LifecycleSubscription>();
  private readonly byCallback = new Map<number, LifecycleSubscription>();
  private rpc: RpcConnection | undefined;

  /** Starts routing the connection's event messages and registers every live subscription on it. */
  async attach(rpc: RpcConnection): Promise<void> {
    this.rpc = rpc;
    this.byCallback.clear();
    rpc.on('message', (procedure, payload) => this.onMessage(procedure, payload));
    await Promise.all([...this.subs].map((sub) => this.register(rpc, sub)));
  }

  async subscribeLifecycle(rpc: RpcConnection, domain: Domain | null): Promise<LifecycleSubscription> {
    const sub = new LifecycleSubscription(domain, (s) => this.unsubscribe(s));
    await this.register(rpc, sub);
    this.subs.add(sub);
    return sub;
  }

  private async register(rpc: RpcConnection, sub: LifecycleSubscription): Promise<void> {
    await rpc.call(
      Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
      (w) => {
        w.int(DomainEventId.LIFECYCLE);
        w.optional(sub.domain, writeDomain);
      },
      // Mapped while decoding, not after the await: an event may follow the reply in the same
      // socket read and is routed before any promise continuation runs.
      (r) => {
        const id = r.int();
        sub.callbackId = id;
        this.byCallback.set(id, sub);
      },
    );
  }

  private async unsubscribe(sub: LifecycleSubscription): Promise<void> {
    this.subs.delete(sub);
    const id = sub.callbackId;
    if (id === undefined) return;
    this.byCallback.delete(id);
    sub.callbackId = undefined;
    const rpc = this.rpc;
    if (!rpc || rpc.isClosed) return;
    await rpc.call(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, (w) => w.int(id));
  }

  private onMessage(procedure: number, payload: Buffer): void {
    if (procedure !== Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE) return;
    let callbackId: number;
    let ev: DomainLifecycleEvent;
    try {
      const r = new XdrReader(payload);
      callbackId = r.int();
      ev = { domain: readDomain(r), event: r.int(), detail: r.int() };
    } catch {
      // A malformed event says nothing we could act on; the calls on this connection are unaffected.
      return;
    }
    this.byCallback.get(callbackId)?.deliver(ev);
  }
}
