import { readSync, writeSync } from 'node:fs';
import { VchanError } from '@odyssey/hal';
import type { EventWatch } from './binding.js';
import type { Koffi } from './koffi.js';

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
/** Errors and a closed fd count as an event: libxenvchan_wait then reports them. */
const READY = POLLIN | POLLERR | POLLHUP | POLLNVAL;
const EINTR = 4;
/** struct pollfd: int fd; short events; short revents. */
const POLLFD_SIZE = 8;

interface Libc {
  eventfd(initval: number, flags: number): number;
  poll: {
    async(fds: Buffer, nfds: number, timeout: number, done: (error: unknown, result: number) => void): void;
  };
}

/**
 * Waits for event channels off the main thread. Node cannot watch a character
 * device on its own loop (libuv polls sockets, pipes and ttys; a read of
 * /dev/xen/evtchn would block a pool thread all the same), so the waiting sits
 * on a libuv pool thread, as a koffi async call. It is poll(2) rather than
 * libxenvchan_wait for two reasons: one call covers every open vchan, so the
 * process holds one pool thread however many vchans it has (a blocked
 * libxenvchan_wait per vchan would use up the pool's four threads and stall fs
 * and dns); and poll also watches an eventfd, whose write returns it at once,
 * so a vchan can be closed without a thread still waiting on it. The vchan
 * calls libxenvchan_wait itself once poll saw its fd readable, which no longer blocks.
 */
export class EventPoller {
  readonly #koffi: Koffi;
  readonly #libc: Libc;
  readonly #wakeFd: number;
  /** Watches with a next() pending. */
  readonly #pending = new Set<PollEventWatch>();
  #inFlight = false;
  #scheduled = false;
  #interrupted = false;

  constructor(koffi: Koffi) {
    const libc = koffi.load('libc.so.6');
    this.#koffi = koffi;
    this.#libc = {
      eventfd: libc.func('int eventfd(unsigned int initval, int flags)') as Libc['eventfd'],
      poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)') as unknown as Libc['poll'],
    };
    this.#wakeFd = this.#libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#wakeFd < 0) throw new VchanError(`eventfd failed (errno ${koffi.errno()})`);
  }

  watch(fd: number): EventWatch {
    return new PollEventWatch(this, fd);
  }

  /** @internal */
  add(watch: PollEventWatch): void {
    this.#pending.add(watch);
    this.#schedule();
  }

  /** @internal */
  remove(watch: PollEventWatch): void {
    this.#pending.delete(watch);
  }

  /** @internal Answers a woken watch's pending next(), after the poll in flight returned. */
  wake(watch: PollEventWatch): void {
    if (this.#pending.has(watch)) this.#schedule();
  }

  /** Polls again soon: at once if nothing is in flight, else after interrupting the poll in flight. */
  #schedule(): void {
    if (this.#inFlight) {
      this.#interrupt();
      return;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    // After the current callbacks: vchans woken by the last poll re-arm first and join the next one.
    setImmediate(() => {
      this.#scheduled = false;
      this.#poll();
    });
  }

  #interrupt(): void {
    if (this.#interrupted) return;
    this.#interrupted = true;
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    writeSync(this.#wakeFd, one);
  }

  #poll(): void {
    for (const watch of this.#pending) {
      if (!watch.woken) continue;
      this.#pending.delete(watch);
      watch.settle(false);
    }
    if (this.#inFlight || this.#pending.size === 0) return;
    const watches = [...this.#pending];
    // A fresh array per call: the pool thread reads it while this thread goes on.
    const fds = Buffer.alloc((watches.length + 1) * POLLFD_SIZE);
    [...watches.map((watch) => watch.fd), this.#wakeFd].forEach((fd, i) => {
      fds.writeInt32LE(fd, i * POLLFD_SIZE);
      fds.writeInt16LE(POLLIN, i * POLLFD_SIZE + 4);
    });
    const revents = (i: number): number => fds.readInt16LE(i * POLLFD_SIZE + 6);
    this.#inFlight = true;
    this.#libc.poll.async(fds, watches.length + 1, -1, (error, result) => {
      this.#inFlight = false;
      if (!error && result >= 0) {
        if (revents(watches.length) & POLLIN) this.#drainWakeFd();
        watches.forEach((watch, i) => {
          if (!(revents(i) & READY) || !this.#pending.has(watch)) return;
          this.#pending.delete(watch);
          watch.settle(true);
        });
      } else if (error || this.#koffi.errno() !== EINTR) {
        // koffi hands the worker thread's errno to this callback.
        const failure = new VchanError(
          `poll on the event channels failed: ${String(error ?? this.#koffi.errno())}`,
        );
        for (const watch of watches) {
          this.#pending.delete(watch);
          watch.fail(failure);
        }
      }
      this.#schedule();
    });
  }

  #drainWakeFd(): void {
    this.#interrupted = false;
    try {
      readSync(this.#wakeFd, Buffer.alloc(8));
    } catch {
      // EAGAIN: already drained.
    }
  }
}

/** One event channel's fd, waited for through the process's EventPoller. */
class PollEventWatch implements EventWatch {
  woken = false;
  #resolve: ((event: boolean) => void) | undefined;
  #reject: ((error: Error) => void) | undefined;

  constructor(
    readonly poller: EventPoller,
    readonly fd: number,
  ) {}

  next(): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      this.poller.add(this);
    });
  }

  wake(): void {
    this.woken = true;
    this.poller.wake(this);
  }

  close(): void {
    this.poller.remove(this);
  }

  settle(event: boolean): void {
    const resolve = this.#resolve;
    this.#resolve = this.#reject = undefined;
    if (!event) this.woken = false;
    resolve?.(event);
  }

  fail(error: Error): void {
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    reject?.(error);
  }
}
