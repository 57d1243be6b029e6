import type { Vm } from './vm.js';

/** Event arguments in the order they go on the wire, values already str()-ed. */
export type EventArgs = readonly (readonly [string, string])[];

export interface QubesEvent {
  /** null for events of the app (global), else the VM the event is about. */
  readonly subject: Vm | null;
  readonly name: string;
  readonly args: EventArgs;
}

export type EventListener = (event: QubesEvent) => void;

/**
 * One bus for the whole app. admin.Events subscribers see every event; a
 * listener registered with `pre` can veto a pre-event by throwing, which is how
 * upstream's pre-event handlers refuse changes.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>();
  private readonly vetoers = new Map<string, ((event: QubesEvent) => void)[]>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Handlers of one event name that run before subscribers see it and may throw to refuse. */
  onPre(name: string, handler: (event: QubesEvent) => void): void {
    const list = this.vetoers.get(name) ?? [];
    list.push(handler);
    this.vetoers.set(name, list);
  }

  fire(subject: Vm | null, name: string, args: EventArgs = []): void {
    const event: QubesEvent = { subject, name, args };
    for (const handler of this.vetoers.get(name) ?? []) handler(event);
    for (const listener of this.listeners) listener(event);
  }
}
