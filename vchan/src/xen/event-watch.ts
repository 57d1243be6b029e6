import { VchanError } from '@odyssey/hal';
import type { EventWatch } from './binding.js';
import type { Koffi } from './koffi.js';

/** libuv's `enum uv_handle_type` value UV_POLL, for uv_handle_size. */
const UV_POLL = 8;
/** libuv's `enum uv_poll_event` value UV_READABLE. */
const UV_READABLE = 1;

type Handle = unknown;

interface Uv {
  handleSize(type: number): number | bigint;
  pollInit(loop: unknown, handle: Handle, fd: number): number;
  pollStart(handle: Handle, events: number, callback: bigint): number;
  pollStop(handle: Handle): number;
  close(handle: Handle, callback: bigint): void;
  strerror(error: number): string;
}

interface Prototypes {
  readonly poll: ReturnType<Koffi['pointer']>;
  readonly close: ReturnType<Koffi['pointer']>;
}

/** koffi's type names are process-wide: the callback prototypes are declared once. */
let prototypes: Prototypes | undefined;

/**
 * Waits for event channels on Node's own event loop: one libuv poll handle (epoll) per event
 * channel fd, made through koffi with the libuv that runs this process (exported by the node
 * binary, or Debian's shared libuv1 that its node links). Node's own API cannot do it: net.Socket
 * takes sockets, pipes and ttys only, and /dev/xen/evtchn is a character device. The notification
 * is handled in the loop's poll phase, with no thread between the kernel and the vchan: this
 * replaced poll(2) as a koffi async call on a libuv pool thread (measured on a fifo, 45 µs a wake
 * against 70 µs; under nested TCG every thread switch costs far more). libuv makes the fd
 * non-blocking, so libxenvchan_wait must only be called once the fd was seen readable, as
 * XenVchan does.
 */
export class EventPoller {
  readonly #koffi: Koffi;
  readonly #uv: Uv;
  readonly #loop: unknown;
  readonly #handleSize: number;
  readonly #pollCallback: bigint;
  readonly #closeCallback: bigint;
  /** Watches by their handle's address: libuv's callbacks name the handle only. */
  readonly #watches = new Map<bigint, LoopEventWatch>();

  constructor(koffi: Koffi) {
    const self = koffi.load(null);
    this.#koffi = koffi;
    this.#uv = {
      handleSize: self.func('size_t uv_handle_size(int type)') as Uv['handleSize'],
      pollInit: self.func('int uv_poll_init(void *loop, void *handle, int fd)') as Uv['pollInit'],
      pollStart: self.func('int uv_poll_start(void *handle, int events, void *cb)') as Uv['pollStart'],
      pollStop: self.func('int uv_poll_stop(void *handle)') as Uv['pollStop'],
      close: self.func('void uv_close(void *handle, void *cb)') as Uv['close'],
      strerror: self.func('const char *uv_strerror(int err)') as Uv['strerror'],
    };
    this.#loop = (self.func('void *uv_default_loop(void)') as () => unknown)();
    this.#handleSize = Number(this.#uv.handleSize(UV_POLL));
    prototypes ??= {
      poll: koffi.pointer(koffi.proto('void odyssey_uv_poll_cb(void *handle, int status, int events)')),
      close: koffi.pointer(koffi.proto('void odyssey_uv_close_cb(void *handle)')),
    };
    this.#pollCallback = koffi.register((handle: Handle) => this.#fired(handle), prototypes.poll);
    this.#closeCallback = koffi.register((handle: Handle) => this.#closed(handle), prototypes.close);
  }

  watch(fd: number): EventWatch {
    const handle = this.#koffi.alloc('uint8', this.#handleSize) as Handle;
    const status = this.#uv.pollInit(this.#loop, handle, fd);
    if (status < 0) {
      this.#koffi.free(handle);
      throw new VchanError(`cannot watch event channel fd ${fd}: uv_poll_init: ${this.#uv.strerror(status)}`);
    }
    const watch = new LoopEventWatch(this, handle);
    this.#watches.set(this.#koffi.address(handle), watch);
    return watch;
  }

  /** @internal */
  start(watch: LoopEventWatch): void {
    // Errors (status < 0 in the callback) count as an event too: libxenvchan_wait then reports them.
    const status = this.#uv.pollStart(watch.handle, UV_READABLE, this.#pollCallback);
    if (status < 0)
      watch.fail(new VchanError(`uv_poll_start on an event channel: ${this.#uv.strerror(status)}`));
  }

  /** @internal */
  stop(watch: LoopEventWatch): void {
    this.#uv.pollStop(watch.handle);
  }

  /**
   * @internal uv_close stops the handle's poll itself; the handle's memory goes back once libuv has
   * let go of it, in the close callback.
   */
  close(watch: LoopEventWatch): void {
    this.#uv.close(watch.handle, this.#closeCallback);
  }

  #fired(handle: Handle): void {
    const watch = this.#watches.get(this.#koffi.address(handle));
    if (!watch) return;
    this.#uv.pollStop(handle);
    watch.settle(true);
  }

  /** Frees the memory koffi allocated (the watch holds it: the callback's pointer is only its address). */
  #closed(handle: Handle): void {
    const address = this.#koffi.address(handle);
    const watch = this.#watches.get(address);
    if (!watch) return;
    this.#watches.delete(address);
    this.#koffi.free(watch.handle);
  }
}

/** One event channel's fd, watched by a libuv poll handle while a next() is pending. */
class LoopEventWatch implements EventWatch {
  #woken = false;
  #closed = false;
  #resolve: ((event: boolean) => void) | undefined;
  #reject: ((error: Error) => void) | undefined;

  constructor(
    readonly poller: EventPoller,
    readonly handle: Handle,
  ) {}

  next(): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new VchanError('the event channel watch is closed'));
        return;
      }
      if (this.#woken) {
        this.#woken = false;
        resolve(false);
        return;
      }
      this.#resolve = resolve;
      this.#reject = reject;
      this.poller.start(this);
    });
  }

  wake(): void {
    if (!this.#resolve) {
      this.#woken = true;
      return;
    }
    this.poller.stop(this);
    this.settle(false);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.poller.close(this);
    this.settle(false);
  }

  settle(event: boolean): void {
    const resolve = this.#resolve;
    this.#resolve = this.#reject = undefined;
    resolve?.(event);
  }

  fail(error: Error): void {
    const reject = this.#reject;
    this.#resolve = this.#reject = undefined;
    reject?.(error);
  }
}
