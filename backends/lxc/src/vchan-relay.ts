import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPeerGone, readPastGonePeer } from '@odyssey/hal';
import { connectOnce, vchanSocketPath } from '@odyssey/vchan';
import { openSocketToAll } from './host-transport.js';
import type { RuntimeFiles } from './runtime-files.js';

export interface VchanRelayOptions {
  readonly files: RuntimeFiles;
  /** The libvirt id of a running domain, undefined when it has none. */
  readonly idOf: (name: string) => Promise<number | undefined>;
  /** The name of the running domain with this libvirt id, undefined when there is none. */
  readonly nameOf: (id: number) => Promise<string | undefined>;
  readonly log: (level: 'info' | 'warn', message: string) => void;
  /** Relays one domain may have open (waiting or joined) at once; default 256. */
  readonly maxPerDomain?: number;
}

/** A server socket of one domain for a client in another, and dom0's stand-in for it in the client's dir. */
interface Relay {
  readonly source: string;
  readonly peer: string;
  /** The server's socket in its own domain's dir. */
  readonly serverPath: string;
  /** dom0's socket in the peer's dir, named as the peer expects the server's. */
  readonly standInPath: string;
  server: Server | undefined;
  joined: boolean;
  closed: boolean;
  ends: Socket[];
}

/** How long dom0 retries a server socket that exists but refuses (bound, not yet listening). */
const REFUSED_RETRIES = 100;
const REFUSED_PAUSE_MS = 10;

/**
 * dom0's relay of domain-to-domain vchans. A domain sees only its own vchan directory, so when
 * domain A binds a server socket for domain B (`vchan.A.B.port.sock` in A's dir, B named by its
 * libvirt id or its name), dom0 binds the socket B's client looks for in B's dir
 * (`vchan.<A as B named it>.B.port.sock`, A by id when B was named by id) and, when B connects,
 * connects to A's and joins the two byte for byte. The server's identity comes from whose
 * directory the socket is in, never from the name alone, so no domain can stand in for another.
 */
export class VchanRelay {
  readonly #watchers = new Map<string, FSWatcher>();
  /** Relays whose stand-in waits for the peer, by the server socket's path. */
  readonly #relays = new Map<string, Relay>();
  /** Relays whose two ends are joined (the server's socket name is free for its next bind). */
  readonly #joined = new Set<Relay>();
  readonly #max: number;
  #closed = false;

  constructor(private readonly options: VchanRelayOptions) {
    this.#max = options.maxPerDomain ?? 256;
  }

  /** Starts relaying the server sockets a domain binds in its vchan dir (idempotent). */
  async watch(name: string): Promise<void> {
    if (this.#closed || this.#watchers.has(name)) return;
    const dir = this.options.files.vchanDir(name);
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, (_event, file) => {
        if (file) this.#seen(name, file.toString());
      });
    } catch {
      return; // not a domain's dir (no vchan dir in it)
    }
    watcher.on('error', () => this.forget(name));
    this.#watchers.set(name, watcher);
    for (const file of await readdir(dir).catch(() => [])) this.#seen(name, file);
  }

  /** Stops relaying for a domain: its own server sockets and the stand-ins in its dir. */
  forget(name: string): void {
    this.#watchers.get(name)?.close();
    this.#watchers.delete(name);
    for (const relay of [...this.#relays.values(), ...this.#joined])
      if (relay.source === name || relay.peer === name) this.#close(relay);
  }

  /** Watches the dirs of the domains defined before odysseyd (re)started. */
  async watchExisting(): Promise<void> {
    const names = await readdir(this.options.files.domainsDir()).catch(() => []);
    for (const name of names) await this.watch(name);
  }

  close(): void {
    this.#closed = true;
    for (const name of [...this.#watchers.keys()]) this.forget(name);
  }

  /** A name appeared or went in `source`'s dir: relay a new server socket, drop a vanished one's stand-in. */
  #seen(source: string, file: string): void {
    const prefix = `vchan.${source}.`;
    const match = /^(.+)\.(\d+)\.sock$/.exec(file.startsWith(prefix) ? file.slice(prefix.length) : '');
    const client = match?.[1];
    if (!match || !client || client === '0') return;
    const serverPath = join(this.options.files.vchanDir(source), file);
    this.#update(source, client, Number(match[2]), serverPath).catch((error: unknown) =>
      this.options.log('warn', `lxc vchan relay for ${serverPath}: ${String(error)}`),
    );
  }

  async #update(source: string, client: string, port: number, serverPath: string): Promise<void> {
    const present = await lstat(serverPath).then(
      (s) => s.isSocket(),
      () => false,
    );
    const known = this.#relays.get(serverPath);
    if (!present) {
      if (known) this.#close(known);
      return;
    }
    if (known) return;
    const byId = /^\d+$/.test(client);
    const peer = byId ? await this.options.nameOf(Number(client)) : client;
    if (!peer || peer === source || !this.#watchers.has(peer)) return;
    const sourceLabel = byId ? await this.options.idOf(source) : source;
    if (sourceLabel === undefined) return;
    const standInPath = vchanSocketPath(this.options.files.vchanDir(peer), String(sourceLabel), peer, port);
    // Another event for the same socket may have set the relay up while this one looked names up.
    if (this.#relays.has(serverPath)) return;
    // Counted here, with no await before the relay is added: sockets bound together all pass a
    // count taken before the lookups, and each would get a stand-in.
    if (this.#count(source) >= this.#max) {
      this.options.log(
        'warn',
        `lxc vchan relay: ${source} has ${this.#max} relays open; ${serverPath} is not relayed`,
      );
      return;
    }
    const relay: Relay = {
      source,
      peer,
      serverPath,
      standInPath,
      server: undefined,
      joined: false,
      closed: false,
      ends: [],
    };
    this.#relays.set(serverPath, relay);
    try {
      await this.#standIn(relay);
    } catch (error) {
      // The peer took the stand-in's name: a server left listening there would be one no one reaches.
      this.#close(relay);
      throw error;
    }
  }

  #count(source: string): number {
    let n = 0;
    for (const relay of [...this.#relays.values(), ...this.#joined]) if (relay.source === source) n++;
    return n;
  }

  /** dom0's server in the peer's dir: one client, as a vchan server takes; open to all, the dir guards it. */
  async #standIn(relay: Relay): Promise<void> {
    await rm(relay.standInPath, { force: true });
    const server = createServer({ pauseOnConnect: true });
    relay.server = server;
    server.on('connection', (near: Socket) => {
      if (relay.joined || relay.closed) {
        near.destroy();
        return;
      }
      relay.joined = true;
      this.#relays.delete(relay.serverPath);
      this.#joined.add(relay);
      this.#stopListening(relay);
      this.#join(relay, near).catch((error: unknown) => {
        this.options.log('warn', `lxc vchan relay ${relay.serverPath}: ${String(error)}`);
        this.#close(relay);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(relay.standInPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (relay.closed) {
      this.#stopListening(relay);
      return;
    }
    await openSocketToAll(relay.standInPath);
  }

  /** close() unlinks the stand-in at once (libuv); a later unlink could take the next stand-in's socket. */
  #stopListening(relay: Relay): void {
    relay.server?.close();
    relay.server = undefined;
  }

  /**
   * Joins the peer's connection to the server's socket. pipe() stops reading one side while the
   * other's write buffer is full, so each direction holds at most a socket's high-water mark plus
   * one read: a slow reader slows its writer down rather than growing dom0's memory.
   */
  async #join(relay: Relay, near: Socket): Promise<void> {
    relay.ends.push(near);
    near.on('error', (error) => this.#failed(relay, error));
    const far = await this.#connectServer(relay);
    if (relay.closed || near.destroyed) {
      far.destroy();
      this.#close(relay);
      return;
    }
    relay.ends.push(far);
    far.on('error', (error) => this.#failed(relay, error));
    // A write to an end whose domain died is dropped and that end read to its last byte, as a
    // vchan ring keeps it: the other end gets what is already queued for it, then its end.
    readPastGonePeer(near);
    readPastGonePeer(far);
    near.on('close', () => far.destroySoon());
    far.on('close', () => near.destroySoon());
    near.on('close', () => this.#forgetWhenGone(relay));
    far.on('close', () => this.#forgetWhenGone(relay));
    near.pipe(far);
    far.pipe(near);
    near.resume();
  }

  async #connectServer(relay: Relay): Promise<Socket> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await connectOnce(relay.serverPath);
      } catch (error) {
        // Bound but not yet listening: the server's next step, unless the socket is stale.
        const refused = (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        if (!refused || attempt >= REFUSED_RETRIES || relay.closed) throw error;
        await sleep(REFUSED_PAUSE_MS);
      }
    }
  }

  /** A reset read is a peer gone too: the socket delivered what it held and closes on its own. */
  #failed(relay: Relay, error: Error): void {
    if (!isPeerGone(error)) this.#close(relay);
  }

  #forgetWhenGone(relay: Relay): void {
    if (relay.ends.every((end) => end.destroyed)) this.#close(relay);
  }

  #close(relay: Relay): void {
    if (this.#relays.get(relay.serverPath) === relay) this.#relays.delete(relay.serverPath);
    this.#joined.delete(relay);
    relay.closed = true;
    this.#stopListening(relay);
    for (const end of relay.ends) end.destroy();
  }
}
