import { access } from 'node:fs/promises';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { getSystemErrorName } from 'node:util';
import { VchanError, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';
import type { LibxenvchanBinding, VchanCtrl } from './binding.js';
import { loadLibxenvchan } from './load.js';
import { XenVchan } from './xen-vchan.js';
import { openXenstore, type Xenstore } from './xenstore.js';
import { stopWaitingOnAbort } from '../listen-signal.js';

export interface XenVchanTransportOptions {
  /** libxenvchan to load; default $ODYSSEY_LIBXENVCHAN, else Debian's libxenvchan.so.4.17. */
  readonly libraryPath?: string;
  /** A ready binding instead of loading the library (tests pass a double). */
  readonly binding?: LibxenvchanBinding;
  /** xenstore access; default libxenstore.so.4 through koffi. */
  readonly xenstore?: Xenstore;
  /** This domain's id; default read from xenstore ("domid"). */
  readonly localDomid?: number;
  /** Turns a domain name into its domid; default: names are decimal domids. */
  readonly resolveDomid?: (remoteDomain: string) => Promise<number>;
  /**
   * Ring size of each direction, in bytes, of a server whose caller names no minimum (a qrexec data
   * channel) when it gets no bulk rings; default 64 KiB, what upstream qrexec asks for.
   */
  readonly ringSize?: number;
  /**
   * Ring size such a server asks for first; default 1 MiB, libxenvchan's largest. Each ring's worth
   * of data costs a switch to the peer domain, which is where the time of a transfer goes under
   * nested Xen (bench/README.md), so a bulk transfer wants the largest. A 1 MiB-ring vchan shares
   * 513 pages through gntalloc, whose limit is per domain (Linux's xen_gntalloc limit, 1024 by
   * default), so only one vchan of the transport at a time has them, and an init gntalloc refuses
   * is tried again with ringSize.
   */
  readonly bulkRingSize?: number;
  /** How long connect() waits for the server; default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Pause between xenstore reads while connect() waits for the server. */
  readonly retryIntervalMs?: number;
  /** The device whose absence means this is not a Xen domain; default /dev/xen/evtchn. */
  readonly evtchnDevice?: string;
  /** How often a domU with open vchans reads its domid to notice it was restored; default 2 s. */
  readonly restoreCheckMs?: number;
  /** Told when vchans are closed because this domain was restored. */
  readonly log?: (message: string) => void;
}

/** A Xen vchan server that is set up but may still wait for its client. */
export interface BoundXenVchan {
  readonly vchan: XenVchan;
  /** Resolves when the client connected; rejects if the vchan is destroyed first. */
  readonly connected: Promise<XenVchan>;
}

const DEFAULT_RING = 64 * 1024;
/** MAX_RING_SHIFT of libxenvchan: a larger ring's grant references would not fit in the shared page. */
const MAX_RING = 1 << 20;
const RESTORE_CHECK_MS = 2000;

/** Domains named by their decimal domid. */
async function decimalDomid(remoteDomain: string): Promise<number> {
  if (!/^\d+$/.test(remoteDomain)) {
    throw new VchanError(`Xen vchan peers are named by domid; got "${remoteDomain}" (pass resolveDomid)`);
  }
  return Number(remoteDomain);
}

/**
 * vchan over Xen grant tables and event channels: libxenvchan (reference §3.2),
 * with the xenstore layout of Qubes' libvchan (§3.1). The library and koffi are
 * loaded on first use, so constructing the transport outside Xen costs nothing.
 */
export class XenVchanTransport implements VchanTransport {
  readonly name = 'xen';
  readonly #options: XenVchanTransportOptions;
  readonly #ring: number;
  readonly #bulkRing: number;
  /** A vchan of this transport has the bulk rings (from its init until its close). */
  #bulkTaken = false;
  #binding: Promise<LibxenvchanBinding> | undefined;
  #xenstore: Promise<Xenstore> | undefined;
  #localDomid: Promise<number> | undefined;
  /** Open vchans of a domU, with the domid it had when each was opened. */
  readonly #live = new Map<XenVchan, number>();
  #restoreCheck: NodeJS.Timeout | undefined;
  #checking = false;
  /**
   * The newest server on each xenstore path. libxenvchan_close removes its server's path whoever
   * wrote it last, and a destroyed server closes only once its wait in flight returned: a new
   * server on the same port (an agent listening again) waits for that, or its entries would go.
   */
  readonly #servers = new Map<string, XenVchan>();

  constructor(options: XenVchanTransportOptions = {}) {
    this.#options = options;
    this.#ring = options.ringSize ?? DEFAULT_RING;
    this.#bulkRing = options.bulkRingSize ?? MAX_RING;
  }

  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<XenVchan> {
    return (await this.bind(remoteDomain, port, options)).connected;
  }

  /**
   * The server side in two steps, so a caller can observe the waiting state: the
   * xenstore entries exist once this resolves, the client arrives later.
   */
  async bind(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<BoundXenVchan> {
    const binding = await this.#ready();
    const peer = await this.#resolve(remoteDomain);
    // Relative: libxenvchan puts it under /local/domain/<own id>, where the client looks.
    const xsPath = `data/vchan/${peer}/${port}`;
    const previous = this.#servers.get(xsPath);
    if (previous?.state() === 'disconnected') await previous.released;
    const self = await this.#ownDomid();
    const init = (readMin: number, writeMin: number): VchanCtrl | null =>
      initUninterrupted(binding, () => binding.serverInit(null, peer, xsPath, readMin, writeMin));
    const named = options?.readMin !== undefined || options?.writeMin !== undefined;
    const bulk = !named && !this.#bulkTaken && this.#bulkRing > this.#ring;
    let ctrl = bulk ? init(this.#bulkRing, this.#bulkRing) : null;
    const gotBulk = ctrl !== null;
    if (!ctrl) {
      // Minima a caller names are what it gets, as upstream's callers expect: qubesdb's 4 KiB
      // rings share 3 pages where 64 KiB would take 33 of dom0's gntalloc limit for each qube.
      ctrl = init(options?.readMin ?? this.#ring, options?.writeMin ?? this.#ring);
    }
    if (!ctrl) throw initError(binding, `libxenvchan_server_init(${peer}, "${xsPath}")`);
    const vchan = this.#open(binding, ctrl, remoteDomain, port, self);
    if (gotBulk) {
      this.#bulkTaken = true;
      void vchan.released.then(() => (this.#bulkTaken = false));
    }
    this.#servers.set(xsPath, vchan);
    void vchan.released.then(() => {
      if (this.#servers.get(xsPath) === vchan) this.#servers.delete(xsPath);
    });
    const connected = new Promise<XenVchan>((resolve, reject) => {
      vchan.onConnect(() => {
        // As Qubes' libvchan does: a connected server is no longer offered to other clients.
        this.#store()
          .then((xenstore) => xenstore.remove(xsPath))
          .catch(() => undefined);
        resolve(vchan);
      });
      vchan.onDestroyWhileWaiting(() =>
        reject(new VchanError(`vchan server ${remoteDomain}:${port} closed before a client connected`)),
      );
    });
    connected.catch(() => undefined);
    stopWaitingOnAbort(vchan, connected, options?.signal);
    return { vchan, connected };
  }

  async connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<XenVchan> {
    const binding = await this.#ready();
    const peer = await this.#resolve(remoteDomain);
    const self = await this.#ownDomid();
    const xsPath = `/local/domain/${peer}/data/vchan/${self}/${port}`;
    const deadline = Date.now() + (options?.timeoutMs ?? this.#options.connectTimeoutMs ?? 10_000);
    const xenstore = await this.#store();
    // The server writes event-channel last, so once it is there the ring can be mapped.
    while (!(await xenstore.read(`${xsPath}/event-channel`))) {
      if (Date.now() >= deadline) {
        throw new VchanError(`timed out connecting to vchan ${remoteDomain}:${port} (no ${xsPath})`);
      }
      await sleep(this.#options.retryIntervalMs ?? 50);
    }
    const ctrl = initUninterrupted(binding, () => binding.clientInit(null, peer, xsPath));
    if (!ctrl) throw initError(binding, `libxenvchan_client_init(${peer}, "${xsPath}")`);
    return this.#open(binding, ctrl, remoteDomain, port, self);
  }

  #open(
    binding: LibxenvchanBinding,
    ctrl: VchanCtrl,
    remoteDomain: string,
    port: number,
    self: number,
  ): XenVchan {
    let vchan: XenVchan;
    try {
      const sizes = binding.ringSizes(ctrl);
      vchan = new XenVchan(binding, ctrl, remoteDomain, port, {
        readRing: sizes.read,
        writeRing: sizes.write,
      });
    } catch (error) {
      binding.close(ctrl);
      throw error;
    }
    this.#track(vchan, self);
    return vchan;
  }

  /**
   * A domU that is saved and restored (libvirt's managed save: suspend, then resume) comes back as
   * a new domain with a new domid: its event channels and grants died with the old one, and no
   * notification tells its vchans so. A server would wait forever for a client that can no longer
   * reach it (its xenstore entries were under the old domain), and a connected vchan would never
   * see its peer close. So while a domU has vchans open, it reads its domid now and then, and on
   * a change abandons the vchans opened under the old one (XenVchan.abandon: closing them would
   * crash the kernel's evtchn driver): their owners see them close, as when a peer goes away, and
   * listen or connect again under the new domid. dom0 is never restored, and a
   * domid the caller fixed cannot change.
   */
  #track(vchan: XenVchan, self: number): void {
    if (self === 0 || this.#options.localDomid !== undefined) return;
    this.#live.set(vchan, self);
    vchan.once('close', () => {
      this.#live.delete(vchan);
      if (this.#live.size > 0) return;
      clearInterval(this.#restoreCheck);
      this.#restoreCheck = undefined;
    });
    this.#restoreCheck ??= setInterval(
      () => void this.#checkRestored(),
      this.#options.restoreCheckMs ?? RESTORE_CHECK_MS,
    ).unref();
  }

  async #checkRestored(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const now = await this.#readOwnDomid();
      this.#localDomid = Promise.resolve(now);
      const dead = [...this.#live].filter(([, then]) => then !== now);
      if (dead.length === 0) return;
      this.#options.log?.(
        `restored as domid ${now}: closing ${dead.map(([v, then]) => `${v.remoteDomain}:${v.port} (opened as ${then})`).join(', ')}`,
      );
      // Closed without an error: owners need not listen for 'error' to see a peer go away.
      for (const [vchan] of dead) vchan.abandon();
    } catch {
      // xenstore did not answer this time (busy, or in the middle of the restore): next time.
    } finally {
      this.#checking = false;
    }
  }

  /** The binding, once this is known to be a Xen domain. */
  async #ready(): Promise<LibxenvchanBinding> {
    const { binding, libraryPath } = this.#options;
    this.#binding ??= binding ? Promise.resolve(binding) : loadLibxenvchan(libraryPath);
    const loaded = await this.#binding;
    const device = this.#options.evtchnDevice ?? '/dev/xen/evtchn';
    try {
      await access(device);
    } catch (error) {
      throw new VchanError(`not running under Xen: ${device} does not exist`, { cause: error });
    }
    return loaded;
  }

  #resolve(remoteDomain: string): Promise<number> {
    return (this.#options.resolveDomid ?? decimalDomid)(remoteDomain);
  }

  #store(): Promise<Xenstore> {
    const { xenstore } = this.#options;
    this.#xenstore ??= xenstore ? Promise.resolve(xenstore) : openXenstore();
    return this.#xenstore;
  }

  #ownDomid(): Promise<number> {
    const { localDomid } = this.#options;
    if (localDomid !== undefined) return Promise.resolve(localDomid);
    if (!this.#localDomid) {
      this.#localDomid = this.#readOwnDomid();
      // Not cached when it failed: xenstored may just not be up yet.
      this.#localDomid.catch(() => (this.#localDomid = undefined));
    }
    return this.#localDomid;
  }

  async #readOwnDomid(): Promise<number> {
    const value = await (await this.#store()).read('domid');
    if (!value || !/^\d+$/.test(value)) {
      throw new VchanError(
        `cannot read this domain's id from xenstore ("domid" is ${JSON.stringify(value)})`,
      );
    }
    return Number(value);
  }
}

/** Tries of an init that a signal keeps interrupting before its EINTR is reported. */
const INIT_ATTEMPTS = 5;

/**
 * Runs a libxenvchan init again when a signal interrupted it: mapping the grants (the mmap of
 * gntdev or gntalloc) fails with EINTR when the process gets a signal meanwhile (a child's
 * SIGCHLD, the profiler's SIGPROF), and the failed init has closed what it opened.
 */
function initUninterrupted(binding: LibxenvchanBinding, init: () => VchanCtrl | null): VchanCtrl | null {
  for (let attempt = 1; ; attempt++) {
    const ctrl = init();
    if (ctrl || attempt === INIT_ATTEMPTS || binding.errno() !== constants.errno.EINTR) return ctrl;
  }
}

function initError(binding: LibxenvchanBinding, call: string): VchanError {
  const errno = binding.errno();
  const name = errno > 0 ? ` (${getSystemErrorName(-errno)})` : '';
  return new VchanError(`${call} returned NULL: errno ${errno}${name}`);
}
