import type { Vm } from './vm.js';

/** Python's str() of a bool, as event arguments carry it. */
export type PyBool = 'True' | 'False';

/** `name`, and the old value when there was one (upstream leaves oldvalue out otherwise). */
interface PropertyChange {
  name: string;
  oldvalue?: string;
}

/**
 * Every event the daemon fires, and its arguments: values already str()-ed, keys in
 * the order they go on the wire (an object keeps insertion order). Events about
 * one property, feature, tag or device class carry it after the colon.
 */
export interface EventMap {
  'domain-add': { vm: string };
  'domain-pre-delete': { vm: string };
  'domain-delete': { vm: string };
  'domain-create-on-disk': Record<never, never>;
  'domain-pre-start': { start_guid: PyBool };
  'domain-spawn': { start_guid: PyBool };
  'domain-start': { start_guid: PyBool };
  'domain-start-failed': { reason: string };
  'domain-pre-shutdown': { force: PyBool };
  'domain-shutdown': Record<never, never>;
  'domain-shutdown-failed': { reason: string };
  'domain-stopped': Record<never, never>;
  'domain-pre-paused': Record<never, never>;
  'domain-paused': Record<never, never>;
  'domain-pre-unpaused': Record<never, never>;
  'domain-unpaused': Record<never, never>;
  'domain-resumed': Record<never, never>;
  'domain-preload-dispvm-start': { reason: string; delay?: string };
  'domain-preload-dispvm-used': { dispvm: string; delay: string };
  'domain-volume-import-begin': { volume: string; size: string };
  'domain-volume-import-end': { volume: string; success: PyBool };
  'domain-import-volume': { name: string };
  'net-domain-connect': { vm: string };
  'firewall-changed': Record<never, never>;
  'backup-progress': { backup_profile: string; progress: string };
  /** qubes.FeaturesRequest: the domain's requests as Python's str() of a dict, unchecked beyond the safe characters. */
  'features-request': { untrusted_features: string };
  /** The domain announced qrexec for the first time: its template setup can finish. */
  'template-postinstall': Record<never, never>;
  [set: `property-pre-set:${string}`]: { name: string; newvalue: string; oldvalue?: string };
  [set: `property-set:${string}`]: { name: string; newvalue: string; oldvalue?: string };
  [reset: `property-pre-reset:${string}`]: PropertyChange;
  [reset: `property-reset:${string}`]: PropertyChange;
  [del: `property-pre-del:${string}`]: PropertyChange;
  [del: `property-del:${string}`]: PropertyChange;
  [set: `domain-feature-pre-set:${string}`]: { feature: string; value: string; oldvalue?: string };
  [set: `domain-feature-set:${string}`]: { feature: string; value: string; oldvalue?: string };
  [del: `domain-feature-pre-delete:${string}`]: { feature: string };
  [del: `domain-feature-delete:${string}`]: { feature: string };
  [add: `domain-tag-add:${string}`]: { tag: string };
  [del: `domain-tag-delete:${string}`]: { tag: string };
  [assign: `device-pre-assign:${string}`]: { device: string; options: string };
  [assign: `device-assign:${string}`]: { device: string; options: string };
  [unassign: `device-unassign:${string}`]: { device: string };
  [changed: `device-assignment-changed:${string}`]: { device: string };
}

export type EventName = keyof EventMap;

/** An event of one of the names N, with the arguments its name carries. */
export type EventOf<N extends EventName> = N extends EventName
  ? {
      /** null for events of the app (global), else the VM the event is about. */
      readonly subject: Vm | null;
      readonly name: N;
      readonly args: Readonly<EventMap[N]>;
    }
  : never;

/** Any event: a union over the map, so checking `name` narrows `args`. */
export type QubesEvent = EventOf<EventName>;

export type EventListener = (event: QubesEvent) => void;

/** The arguments may be left out for events that carry none. */
type ArgsParam<N extends EventName> =
  Record<never, never> extends EventMap[N] ? [args?: EventMap[N]] : [args: EventMap[N]];

/**
 * One bus for the whole app. admin.Events subscribers see every event; a
 * handler registered with `onPre` runs before them and can veto the event by
 * throwing, which is how upstream's pre-event handlers refuse changes.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>();
  private readonly vetoers = new Map<string, EventListener[]>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Handlers of one event name that run before subscribers see it and may throw to refuse. */
  onPre<N extends EventName>(name: N, handler: (event: EventOf<N>) => void): void {
    const list = this.vetoers.get(name) ?? [];
    // Only events named N reach this list (see fire), so the narrower handler is safe here.
    list.push(handler as EventListener);
    this.vetoers.set(name, list);
  }

  fire<N extends EventName>(subject: Vm | null, name: N, ...[args]: ArgsParam<N>): void {
    // `args ?? {}` is only absent for names whose arguments are all optional, which TS cannot see through N.
    const event = { subject, name, args: args ?? {} } as QubesEvent;
    for (const handler of this.vetoers.get(name) ?? []) handler(event);
    for (const listener of this.listeners) listener(event);
  }
}
