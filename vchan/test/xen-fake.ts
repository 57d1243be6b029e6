import type { EventWatch, LibxenvchanBinding, VchanCtrl, Xenstore } from '../src/index.js';

/** libxenvchan's notification requests (VCHAN_NOTIFY_WRITE, VCHAN_NOTIFY_READ). */
const NOTIFY_WRITE = 1;
const NOTIFY_READ = 2;

const EINVAL = 22;
const ENOSPC = 28;
/** Linux's default xen_gntalloc limit, and libxenvchan's largest ring (MAX_RING_SHIFT 20). */
const GNTALLOC_LIMIT = 1024;
const MAX_RING = 1 << 20;

/**
 * libxenvchan_server_init's rings for two minima: each a power of two of pages, except that one ring
 * of at most 1 KiB and one of at most 2 KiB can live in the shared page itself.
 */
function ringBytes(readMin: number, writeMin: number): [number, number] {
  const paged = (min: number): number => 2 ** Math.max(12, Math.ceil(Math.log2(min)));
  if (readMin <= 1024 && writeMin <= 2048) return [1024, 2048];
  if (readMin <= 2048 && writeMin <= 1024) return [2048, 1024];
  if (readMin <= 2048) return [2048, paged(writeMin)];
  if (writeMin <= 2048) return [paged(readMin), 2048];
  return [paged(readMin), paged(writeMin)];
}

function ringPages(bytes: number): number {
  return bytes <= 2048 ? 0 : bytes / 4096;
}

/**
 * A test double of libxenvchan and xenstore for several domains on one fake
 * host. It keeps libxenvchan's observable behaviour (rings of the sizes it
 * rounds to, each server's pages counted against gntalloc's limit,
 * is_open 2/1/0, close notifying the peer, and io.c's notifications: an end
 * notifies its peer after a write or a read only if the peer asked for it, which
 * data_ready and buffer_space always do, and read and write when the ring cannot
 * give what they were called for) and records what a real library would punish:
 * a call on a freed ctrl, a close while a wait on it is in flight, two waits at
 * once, a blocking wait, a write or read that would block (the inits leave the
 * blocking flag as malloc left it: set, here, until setBlocking clears it).
 */
export class FakeXen {
  readonly violations: string[] = [];
  readonly store = new Map<string, string>();
  readonly ends: FakeEnd[] = [];
  #nextFd = 100;

  domain(domid: number): { binding: FakeBinding; xenstore: Xenstore } {
    this.store.set(`/local/domain/${domid}/domid`, String(domid));
    const absolute = (path: string): string =>
      path.startsWith('/') ? path : `/local/domain/${domid}/${path}`;
    return {
      binding: new FakeBinding(this, domid, absolute),
      xenstore: {
        read: async (path) => this.store.get(absolute(path)),
        write: async (path, value) => {
          this.store.set(absolute(path), value);
        },
        remove: async (path) => {
          for (const key of this.store.keys())
            if (key.startsWith(`${absolute(path)}/`)) this.store.delete(key);
        },
      },
    };
  }

  newEnd(channel: FakeChannel, side: 'server' | 'client'): FakeEnd {
    const end = new FakeEnd(this, channel, side, this.#nextFd++);
    this.ends.push(end);
    return end;
  }

  end(ctrl: VchanCtrl, call: string): FakeEnd {
    const end = ctrl as unknown as FakeEnd;
    if (end.freed) this.violations.push(`${call} on a freed ctrl`);
    return end;
  }
}

export class FakeChannel {
  /** Bytes written by the client, read by the server, and the other way round. */
  toServer = Buffer.alloc(0);
  toClient = Buffer.alloc(0);
  srvLive = 1;
  /** 2 until a client connects. */
  cliLive = 2;
  server!: FakeEnd;
  client: FakeEnd | undefined;

  constructor(
    readonly serverRing: number,
    readonly clientRing: number,
    readonly xsPath: string,
  ) {}
}

export class FakeEnd {
  freed = false;
  /** Notifications pending on this end's event channel. */
  events = 0;
  /** Notifications this end's event channel received in all. */
  received = 0;
  /** What the peer asked this end to notify it of (the ring's cli_notify or srv_notify). */
  asked = 0;
  blocking = true;
  /** Pages a server's init shared through gntalloc, given back by its close. */
  grants = 0;
  waiting = false;
  waits = 0;
  watchClosed = false;
  #wakeup: ((event: boolean) => void) | undefined;
  #woken = false;

  constructor(
    readonly xen: FakeXen,
    readonly channel: FakeChannel,
    readonly side: 'server' | 'client',
    readonly fd: number,
  ) {}

  get peer(): FakeEnd | undefined {
    return this.side === 'server' ? this.channel.client : this.channel.server;
  }

  notify(): void {
    this.events++;
    this.received++;
    this.#settle();
  }

  /** request_notify: asks the peer to notify this end after its next write or read. */
  request(bit: number): void {
    const peer = this.peer;
    if (peer) peer.asked |= bit;
  }

  /** send_notify: notifies the peer if it asked for this bit, and clears its request. */
  sendNotify(bit: number): void {
    if (!(this.asked & bit)) return;
    this.asked &= ~bit;
    this.peer?.notify();
  }

  watch(): EventWatch {
    return {
      next: () => {
        if (this.waiting) this.xen.violations.push('two waits in flight on one ctrl');
        this.waiting = true;
        this.waits++;
        return new Promise<boolean>((resolve) => {
          this.#wakeup = (event) => {
            this.waiting = false;
            resolve(event);
          };
          this.#settle();
        });
      },
      wake: () => {
        this.#woken = true;
        this.#settle();
      },
      close: () => {
        if (this.waiting) this.xen.violations.push('watch closed while a wait is in flight');
        this.watchClosed = true;
      },
    };
  }

  /** Like the pool thread returning: later, on the event loop. */
  #settle(): void {
    const wakeup = this.#wakeup;
    if (!wakeup || (!this.#woken && this.events === 0)) return;
    this.#wakeup = undefined;
    const event = !this.#woken;
    this.#woken = false;
    setImmediate(() => wakeup(event));
  }
}

class FakeBinding implements LibxenvchanBinding {
  readonly path = 'fake-libxenvchan';
  /** errno the next failing init leaves behind. */
  failWithErrno = 0;
  /** How many of the next inits fail with failWithErrno; all of them when undefined. */
  failTimes: number | undefined;
  #errno = 0;
  initCalls = 0;
  /** gntalloc's limit on the pages this domain shares (Linux's xen_gntalloc limit). */
  grantLimit = GNTALLOC_LIMIT;
  /** Pages this domain's open servers share. */
  grantsShared = 0;

  constructor(
    readonly xen: FakeXen,
    readonly domid: number,
    readonly absolute: (path: string) => string,
  ) {}

  serverInit(
    _logger: null,
    _domain: number,
    xsPath: string,
    readMin: number,
    writeMin: number,
  ): VchanCtrl | null {
    this.initCalls++;
    if (this.failWithErrno) return this.#fail();
    if (readMin > MAX_RING || writeMin > MAX_RING) {
      this.#errno = EINVAL;
      return null;
    }
    const [readRing, writeRing] = ringBytes(readMin, writeMin);
    const pages = 1 + ringPages(readRing) + ringPages(writeRing);
    if (this.grantsShared + pages > this.grantLimit) {
      this.#errno = ENOSPC;
      return null;
    }
    this.grantsShared += pages;
    const path = this.absolute(xsPath);
    const channel = new FakeChannel(readRing, writeRing, path);
    channel.server = this.xen.newEnd(channel, 'server');
    channel.server.grants = pages;
    this.xen.store.set(`${path}/ring-ref`, '8');
    this.xen.store.set(`${path}/event-channel`, String(channel.server.fd));
    return channel.server as unknown as VchanCtrl;
  }

  clientInit(_logger: null, _domain: number, xsPath: string): VchanCtrl | null {
    this.initCalls++;
    if (this.failWithErrno) return this.#fail();
    const server = this.xen.ends.find(
      (end) => end.side === 'server' && end.channel.xsPath === xsPath && !end.freed,
    );
    if (!server || server.freed || server.channel.client) {
      this.#errno = 2;
      return null;
    }
    const channel = server.channel;
    channel.client = this.xen.newEnd(channel, 'client');
    channel.cliLive = 1;
    server.asked = NOTIFY_WRITE;
    server.notify();
    return channel.client as unknown as VchanCtrl;
  }

  close(ctrl: VchanCtrl): void {
    const end = this.xen.end(ctrl, 'close');
    if (end.waiting) this.xen.violations.push('libxenvchan_close while a wait is in flight');
    end.freed = true;
    this.grantsShared -= end.grants;
    if (end.side === 'server') {
      end.channel.srvLive = 0;
      // libxenvchan removes the server's xenstore path on close, whoever wrote it last.
      for (const key of ['ring-ref', 'event-channel']) this.xen.store.delete(`${end.channel.xsPath}/${key}`);
    } else end.channel.cliLive = 0;
    end.peer?.notify();
  }

  recv(ctrl: VchanCtrl, data: Buffer, size: number): number {
    return this.dataReady(ctrl) >= size ? this.read(ctrl, data, size) : 0;
  }

  read(ctrl: VchanCtrl, data: Buffer, size: number): number {
    const end = this.xen.end(ctrl, 'read');
    const key = end.side === 'server' ? 'toServer' : 'toClient';
    if (end.channel[key].length < size) end.request(NOTIFY_WRITE);
    const ring = end.channel[key];
    const n = Math.min(size, ring.length);
    if (n === 0) {
      if (!this.isOpen(ctrl)) return -1;
      if (end.blocking) this.xen.violations.push('libxenvchan_read would block the main thread');
      return 0;
    }
    ring.copy(data, 0, 0, n);
    end.channel[key] = ring.subarray(n);
    end.sendNotify(NOTIFY_READ);
    return n;
  }

  send(ctrl: VchanCtrl, data: Buffer, size: number): number {
    return this.bufferSpace(ctrl) >= size ? this.write(ctrl, data, size) : 0;
  }

  write(ctrl: VchanCtrl, data: Buffer, size: number): number {
    const end = this.xen.end(ctrl, 'write');
    if (!this.isOpen(ctrl)) return -1;
    const key = end.side === 'server' ? 'toClient' : 'toServer';
    const space = this.#space(end);
    if (space < size) {
      end.request(NOTIFY_READ);
      if (end.blocking) this.xen.violations.push('libxenvchan_write would block the main thread');
    }
    const n = Math.min(size, space);
    if (n === 0) return 0;
    end.channel[key] = Buffer.concat([end.channel[key], data.subarray(0, n)]);
    end.sendNotify(NOTIFY_WRITE);
    return n;
  }

  wait(ctrl: VchanCtrl): number {
    const end = this.xen.end(ctrl, 'wait');
    if (end.events === 0) {
      this.xen.violations.push('libxenvchan_wait would block the main thread');
      return -1;
    }
    end.events--;
    return 0;
  }

  fdForSelect(ctrl: VchanCtrl): number {
    return this.xen.end(ctrl, 'fd_for_select').fd;
  }

  isOpen(ctrl: VchanCtrl): number {
    const end = this.xen.end(ctrl, 'is_open');
    return end.side === 'server' ? end.channel.cliLive : end.channel.srvLive;
  }

  dataReady(ctrl: VchanCtrl): number {
    const end = this.xen.end(ctrl, 'data_ready');
    end.request(NOTIFY_WRITE);
    return (end.side === 'server' ? end.channel.toServer : end.channel.toClient).length;
  }

  bufferSpace(ctrl: VchanCtrl): number {
    const end = this.xen.end(ctrl, 'buffer_space');
    end.request(NOTIFY_READ);
    return this.#space(end);
  }

  setBlocking(ctrl: VchanCtrl, blocking: boolean): void {
    this.xen.end(ctrl, 'set_blocking').blocking = blocking;
  }

  ringSizes(ctrl: VchanCtrl): { read: number; write: number } {
    const end = this.xen.end(ctrl, 'ring_sizes');
    const { serverRing, clientRing } = end.channel;
    return end.side === 'server'
      ? { read: serverRing, write: clientRing }
      : { read: clientRing, write: serverRing };
  }

  /** The server's write ring is its write_min side; the client writes into the server's read ring. */
  #space(end: FakeEnd): number {
    const { channel } = end;
    return end.side === 'server'
      ? channel.clientRing - channel.toClient.length
      : channel.serverRing - channel.toServer.length;
  }

  errno(): number {
    return this.#errno;
  }

  watch(fd: number): EventWatch {
    const end = this.xen.ends.find((candidate) => candidate.fd === fd);
    if (!end) throw new Error(`no event channel with fd ${fd}`);
    return end.watch();
  }

  #fail(): null {
    this.#errno = this.failWithErrno;
    if (this.failTimes !== undefined && --this.failTimes === 0) this.failWithErrno = 0;
    return null;
  }
}

export type { FakeBinding };
