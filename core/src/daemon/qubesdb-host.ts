import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';

import { timerMs } from '../clock.js';
import type { VchanTransport } from '@odyssey/hal';
import {
  dom0SocketName,
  Dom0QubesDbServer,
  LocalQubesDbServer,
  QubesDb,
  readOnlySocketPath,
} from '@odyssey/qubesdb';
import {
  connectedIpsEntries,
  netvmClientPart,
  publishedRules,
  qubesDbEntries,
  newReadersOf,
  qubesDbSources,
  runningClients,
  type QubesDbSources,
} from '../lifecycle/qubesdb-entries.js';
import type { Log } from '../log.js';
import type { App } from '../model/app.js';
import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';

export interface QubesDbHostOptions {
  readonly app: App;
  /** dom0's end of the backend's vchans. */
  readonly transport: VchanTransport;
  /** Where each served domain gets its dom0 sockets `qubesdb.<name>.sock` and `.ro.sock` (mode 0600); none without it. */
  readonly socketDir?: string;
  /** dom0's time zone for /qubes-timezone; default: read from /etc/localtime as upstream does. */
  readonly timezone?: string | null;
  readonly log: Log;
}

interface Served {
  readonly xid: number;
  readonly db: QubesDb;
  readonly server: Dom0QubesDbServer;
  /** What dom0 last wrote from the model: a later computation is compared with it. */
  entries: Map<string, string>;
  /** The qubes `entries` were computed from: an event about another leaves them as they are. */
  sources: QubesDbSources;
  /** A netvm's: each running client's part of `entries`, so that an event about one recomputes only that part. */
  parts: Map<Vm, Map<string, string>>;
  readonly local: Promise<readonly LocalQubesDbServer[]>;
}

/** Events that change what a qube leads to: its sources, and a netvm's clients, change with them. */
const LINK_CHANGE = /^property-(?:set|reset|del):(?:netvm|relayvm|template|guivm|audiovm)$/;

/** Upstream's get_timezone: the zone /etc/localtime links to. */
function hostTimezone(): string | null {
  try {
    return readlinkSync('/etc/localtime').split('zoneinfo/')[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * dom0's QubesDB: a database per running domain, served on the domain's
 * QubesDB vchan (and on a dom0 socket, as upstream's per-domain daemons),
 * filled at start with the entries qubes-core-admin writes and kept in step
 * with the model: after a change of a property, feature or state of a qube
 * the entries of a domain are computed from, they are computed again and
 * what differs is written or removed, so the domain's watchers hear of it.
 */
export class QubesDbHost {
  readonly #options: QubesDbHostOptions;
  readonly #served = new Map<string, Served>();
  readonly #timezone: string | null;
  readonly #unsubscribe: () => void;
  /** Domains whose previous run is still being let go of: the next run's socket waits for it. */
  readonly #stopping = new Map<string, Promise<void>>();
  /** The timer that announces the next expiry of a published firewall rule. */
  #expiry: { readonly at: number; readonly timer: NodeJS.Timeout } | undefined;

  constructor(options: QubesDbHostOptions) {
    this.#options = options;
    this.#timezone = options.timezone === undefined ? hostTimezone() : options.timezone;
    this.#unsubscribe = options.app.events.subscribe((event) => this.#onEvent(event));
    for (const vm of options.app.domains.list()) this.#follow(vm);
  }

  /** Serves domain `name` running as `xid` (replacing an earlier run's database); idempotent. */
  serve(name: string, xid: number): void {
    const current = this.#served.get(name);
    if (current?.xid === xid) return;
    if (current) this.#drop(name, current);
    const previous = this.#stopping.get(name) ?? Promise.resolve();
    const vm = this.#options.app.domains.byName(name);
    if (!vm) return;
    const db = new QubesDb();
    const parts = new Map<Vm, Map<string, string>>();
    const entries = this.#compute(vm, parts);
    for (const [key, value] of entries) this.#write(db, key, value);
    this.#write(db, '/qubes-random-seed', randomBytes(64).toString('base64'));
    const server = new Dom0QubesDbServer({
      transport: this.#options.transport,
      domain: String(xid),
      db,
      log: (message) => this.#options.log('info', message),
    });
    this.#served.set(name, {
      xid,
      db,
      server,
      entries,
      sources: qubesDbSources(vm),
      parts,
      local: previous.then(() => this.#openLocal(name, db)),
    });
    this.#scheduleExpiry();
  }

  /** The database of a served domain. */
  database(name: string): QubesDb | undefined {
    return this.#served.get(name)?.db;
  }

  /** The dom0 socket of a domain's database, when the host serves them. */
  socketPath(name: string): string | undefined {
    const dir = this.#options.socketDir;
    return dir === undefined ? undefined : join(dir, dom0SocketName(name));
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    if (this.#expiry) clearTimeout(this.#expiry.timer);
    this.#expiry = undefined;
    const all = [...this.#served.entries()];
    this.#served.clear();
    await Promise.all([...all.map(([, served]) => QubesDbHost.#stop(served)), ...this.#stopping.values()]);
  }

  #onEvent(event: QubesEvent): void {
    if (event.name.includes('-pre-')) return;
    if (event.name === 'property-reset:xid' && event.subject) this.#follow(event.subject);
    if (event.name === 'domain-start-failed' && event.subject) {
      const failed = this.#served.get(event.subject.name);
      if (failed) this.#drop(event.subject.name, failed);
    }
    const newReader = newReadersOf(event);
    const subject = event.subject;
    let netvmRefreshed = false;
    for (const [name, served] of this.#served) {
      const vm = this.#options.app.domains.byName(name);
      if (!vm) continue;
      const reads =
        newReader === 'all' || newReader === vm || (subject !== null && served.sources.all.has(subject));
      if (!reads) continue;
      const client = partOnly(vm, served, event);
      if (!client || !this.#refreshPart(vm, served, client, event)) this.#refresh(vm, served, event);
      netvmRefreshed ||= vm.bool('provides_network');
    }
    // The nearest expiry moves only with a netvm's entries: the rules of its running clients.
    if (newReader === 'all' || netvmRefreshed) this.#scheduleExpiry();
  }

  #follow(vm: Vm): void {
    if (vm.isAdminVm) return;
    const current = this.#served.get(vm.name);
    if (vm.xid < 0) {
      if (current) this.#drop(vm.name, current);
    } else {
      this.serve(vm.name, vm.xid);
    }
  }

  /**
   * Writes what changed and removes what is gone. A service feature that is
   * set, a RemoteVM's name in its relay when its relayvm is set, and the
   * keyboard layout when keyboard_layout is reset are written even when their
   * value stays, as upstream's handlers write them on every such event (and
   * watchers hear of each).
   */
  #refresh(vm: Vm, served: Served, event: QubesEvent): void {
    const parts = new Map<Vm, Map<string, string>>();
    const next = this.#compute(vm, parts);
    const forced = rewrittenKey(vm, event);
    for (const [key, value] of next) {
      if (isFirewallKey(key)) continue;
      if (served.entries.get(key) !== value || key === forced) this.#write(served.db, key, value);
    }
    for (const key of served.entries.keys()) if (!isFirewallKey(key) && !next.has(key)) served.db.rm(key);
    this.#refreshFirewall(served.db, served.entries, next, firewallChangedClient(vm, event));
    served.entries = next;
    served.sources = qubesDbSources(vm);
    served.parts = parts;
  }

  /**
   * A netvm after an event about one of its clients that nothing else in its entries reads:
   * that client's part and the address lists are computed again, not every client's rules. False
   * (nothing written) when the part shares a key with another client's (two clients given one
   * address): then only the whole entries say which value stands.
   */
  #refreshPart(netvm: Vm, served: Served, client: Vm, event: QubesEvent): boolean {
    const { parts } = served;
    const before = parts.get(client) ?? new Map<string, string>();
    const after = netvmClientPart(netvm, client, Date.now() / 1000);
    for (const [other, part] of parts) {
      if (other === client) continue;
      for (const key of [...before.keys(), ...after.keys()]) if (part.has(key)) return false;
    }
    const next = new Map([...connectedIpsEntries(netvm), ...after]);
    for (const [key, value] of next)
      if (!isFirewallKey(key) && served.entries.get(key) !== value) this.#write(served.db, key, value);
    for (const key of before.keys()) if (!isFirewallKey(key) && !after.has(key)) served.db.rm(key);
    this.#refreshFirewall(served.db, before, after, firewallChangedClient(netvm, event));
    for (const key of before.keys()) served.entries.delete(key);
    for (const [key, value] of next) served.entries.set(key, value);
    if (after.size > 0) parts.set(client, after);
    else parts.delete(client);
    return true;
  }

  /**
   * A client's firewall is replaced as upstream's reload_firewall_for_vm
   * does: its rules removed, the new ones written, then its marker
   * /qubes-firewall/<ip>, on which the netvm's daemon reloads. That happens
   * when anything in it changed, and on every firewall-changed of the client
   * (Set, Reload, expiry), even when nothing did. A client that stopped
   * loses its entries (upstream leaves them behind).
   */
  #refreshFirewall(
    db: QubesDb,
    current: Map<string, string>,
    next: Map<string, string>,
    changedClient: Vm | undefined,
  ): void {
    const forcedMarkers = new Set(
      changedClient
        ? ['ip', 'ip6'].map((name) => `/qubes-firewall/${String(changedClient.props.tryGet(name))}`)
        : [],
    );
    const before = firewallDirs(current);
    const after = firewallDirs(next);
    for (const [marker, rules] of after) {
      const old = before.get(marker);
      if (!forcedMarkers.has(marker) && old !== undefined && sameEntries(old, rules)) continue;
      db.rm(`${marker}/`);
      for (const [key, value] of rules) this.#write(db, key, value);
      this.#write(db, marker, '');
    }
    for (const marker of before.keys()) {
      if (after.has(marker)) continue;
      db.rm(`${marker}/`);
      db.rm(marker);
    }
  }

  /**
   * Upstream's Firewall sets a timer for its nearest expiry and fires
   * firewall-changed then, so the netvm drops the rule; this host keeps one
   * timer for the nearest expiry among the clients of the netvms it serves.
   */
  #scheduleExpiry(): void {
    const now = Date.now() / 1000;
    let nearest = Infinity;
    for (const client of this.#publishedClients()) {
      for (const rule of publishedRules(client)) {
        if (rule.expire !== undefined && rule.expire + 1 >= now) nearest = Math.min(nearest, rule.expire);
      }
    }
    if (this.#expiry?.at === nearest) return;
    if (this.#expiry) clearTimeout(this.#expiry.timer);
    this.#expiry = undefined;
    if (nearest === Infinity) return;
    // A rule is expired once its second has passed (isExpired); timers longer than setTimeout's limit wake early and set again.
    const delay = timerMs(nearest - now + 1);
    const timer = setTimeout(() => {
      this.#expiry = undefined;
      const at = Date.now() / 1000;
      for (const client of this.#publishedClients()) {
        if (
          publishedRules(client).some(
            (rule) => rule.expire !== undefined && rule.expire === nearest && rule.expire < at,
          )
        ) {
          this.#options.app.events.fire(client, 'firewall-changed');
        }
      }
      this.#scheduleExpiry();
    }, delay);
    timer.unref();
    this.#expiry = { at: nearest, timer };
  }

  #publishedClients(): Vm[] {
    const clients: Vm[] = [];
    for (const name of this.#served.keys()) {
      const vm = this.#options.app.domains.byName(name);
      if (vm?.bool('provides_network')) clients.push(...runningClients(vm));
    }
    return clients;
  }

  #compute(vm: Vm, parts: Map<Vm, Map<string, string>>): Map<string, string> {
    return qubesDbEntries(vm, { timezone: this.#timezone, parts });
  }

  /** A value the protocol cannot carry (a feature with a bad name) is left out, as upstream's write fails. */
  #write(db: QubesDb, key: string, value: string): void {
    try {
      db.write(key, value);
    } catch (error) {
      this.#options.log('warn', `qubesdb: not writing ${key}: ${(error as Error).message}`);
    }
  }

  async #openLocal(name: string, db: QubesDb): Promise<readonly LocalQubesDbServer[]> {
    const path = this.socketPath(name);
    if (path === undefined) return [];
    const opened: LocalQubesDbServer[] = [];
    try {
      opened.push(await LocalQubesDbServer.listen(path, db, { mode: 0o600 }));
      opened.push(
        await LocalQubesDbServer.listen(readOnlySocketPath(path), db, { mode: 0o600, readOnly: true }),
      );
      return opened;
    } catch (error) {
      this.#options.log('warn', `qubesdb: cannot serve ${path}: ${String(error)}`);
      await Promise.all(opened.map((server) => server.close()));
      return [];
    }
  }

  #drop(name: string, served: Served): void {
    this.#served.delete(name);
    const stopped = QubesDbHost.#stop(served).finally(() => {
      if (this.#stopping.get(name) === stopped) this.#stopping.delete(name);
    });
    this.#stopping.set(name, stopped);
  }

  static async #stop(served: Served): Promise<void> {
    await served.server.stop();
    await Promise.all((await served.local).map((server) => server.close()));
  }
}

/**
 * The client of netvm `vm` whose part of its entries alone the event can change: its subject, when
 * that is a client no other client leads to, read by nothing else of the entries, and the event
 * neither changes what it leads to nor is one upstream rewrites a key on.
 */
function partOnly(vm: Vm, served: Served, event: QubesEvent): Vm | undefined {
  const client = event.subject;
  if (!client || client === vm || client.netvm !== vm || !vm.bool('provides_network')) return undefined;
  const { base, reach } = served.sources;
  if (base.has(client) || reach.get(client) !== 1) return undefined;
  if (LINK_CHANGE.test(event.name) || rewrittenKey(vm, event) !== undefined) return undefined;
  return client;
}

/** The key upstream writes again on this event in `vm`'s QubesDB, whatever it held. */
function rewrittenKey(vm: Vm, event: QubesEvent): string | undefined {
  const subject = event.subject;
  if (!subject) return undefined;
  if (subject === vm && event.name.startsWith('domain-feature-set:service.'))
    return `/qubes-service/${event.name.slice('domain-feature-set:service.'.length)}`;
  if (event.name === 'property-set:relayvm' && subject.props.tryGet('relayvm') === vm)
    return `/remote/${subject.name}`;
  if (subject === vm && event.name === 'property-reset:keyboard_layout') return '/keyboard-layout';
  return undefined;
}

const FIREWALL_DIR = '/qubes-firewall/';
const isFirewallKey = (key: string): boolean => key.startsWith(FIREWALL_DIR);

/** The client whose firewall-changed this event is, when `netvm` is its netvm. */
function firewallChangedClient(netvm: Vm, event: QubesEvent): Vm | undefined {
  const subject = event.subject;
  return event.name === 'firewall-changed' && subject?.netvm === netvm ? subject : undefined;
}

/**
 * Each /qubes-firewall/<ip> marker with the entries under it, in one pass with no split: a netvm
 * has a few entries per running client here, and this runs twice on each refresh of its entries.
 */
function firewallDirs(entries: Map<string, string>): Map<string, [string, string][]> {
  const dirs = new Map<string, [string, string][]>();
  const under = new Map<string, [string, string][]>();
  const entriesUnder = (marker: string): [string, string][] => {
    let list = under.get(marker);
    if (!list) under.set(marker, (list = []));
    return list;
  };
  for (const [key, value] of entries) {
    if (!isFirewallKey(key)) continue;
    const slash = key.indexOf('/', FIREWALL_DIR.length);
    if (slash < 0) dirs.set(key, entriesUnder(key));
    else entriesUnder(key.slice(0, slash)).push([key, value]);
  }
  return dirs;
}

function sameEntries(a: readonly [string, string][], b: readonly [string, string][]): boolean {
  return a.length === b.length && a.every(([key, value], i) => b[i]?.[0] === key && b[i]?.[1] === value);
}
