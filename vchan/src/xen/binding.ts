declare const ctrlBrand: unique symbol;

/** An opaque `struct libxenvchan *`: only ever handed back to the binding. */
export interface VchanCtrl {
  readonly [ctrlBrand]: 'libxenvchan';
}

/**
 * Waits for an event channel's file descriptor without blocking the event loop.
 * One next() at a time; wake() makes a pending next() return early, so the owner
 * frees the channel only after next() has settled.
 */
export interface EventWatch {
  /** Resolves true when the fd is readable (a notification is pending), false when woken. */
  next(): Promise<boolean>;
  /** Makes the pending next(), or the following one, resolve false. */
  wake(): void;
  /** Frees the watch; only once no next() is pending. */
  close(): void;
}

/**
 * libxenvchan as XenVchan uses it: the twelve functions of libxenvchan.h
 * (camel-cased; the logger is always null), the errno they left, and a way to
 * watch the event channel. An interface, so tests can run the vchan logic on a double.
 */
export interface LibxenvchanBinding {
  /** What was loaded (path or soname), for messages. */
  readonly path: string;
  serverInit(
    logger: null,
    domain: number,
    xsPath: string,
    readMin: number,
    writeMin: number,
  ): VchanCtrl | null;
  clientInit(logger: null, domain: number, xsPath: string): VchanCtrl | null;
  close(ctrl: VchanCtrl): void;
  recv(ctrl: VchanCtrl, data: Buffer, size: number): number;
  read(ctrl: VchanCtrl, data: Buffer, size: number): number;
  send(ctrl: VchanCtrl, data: Buffer, size: number): number;
  write(ctrl: VchanCtrl, data: Buffer, size: number): number;
  /** Consumes one notification; blocks while none is pending, so call it only after watch() saw one. */
  wait(ctrl: VchanCtrl): number;
  fdForSelect(ctrl: VchanCtrl): number;
  /** 0 closed, 1 connected, 2 server still waiting for its client. */
  isOpen(ctrl: VchanCtrl): number;
  /** Asks the peer to notify this end after its next write, and returns the bytes in the ring. */
  dataReady(ctrl: VchanCtrl): number;
  /** Asks the peer to notify this end after its next read, and returns the room in the ring. */
  bufferSpace(ctrl: VchanCtrl): number;
  /**
   * Sets the ctrl's `blocking` flag, which read and write consult and which libxenvchan's inits
   * never set (their ctrl comes from malloc): the header's struct field, written in place.
   */
  setBlocking(ctrl: VchanCtrl, blocking: boolean): void;
  /**
   * The bytes each ring of this end holds, read from the header's struct (libxenvchan rounds what
   * the server asked for up to a power of two, and a client learns the sizes only from there).
   */
  ringSizes(ctrl: VchanCtrl): { read: number; write: number };
  /** errno after the last call on this thread (0 when unknown). */
  errno(): number;
  watch(fd: number): EventWatch;
}
