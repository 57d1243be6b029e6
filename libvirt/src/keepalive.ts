/** libvirt's keepalive program: PING/PONG messages that prove the peer is still alive. */
export const KeepaliveProcedure = { PING: 1, PONG: 2 } as const;

export interface KeepaliveOptions {
  /** Send a PING after this much silence from the daemon. libvirt's client default is 5 s. */
  intervalMs: number;
  /** Declare the daemon dead after this many unanswered PINGs. libvirt's client default is 5. */
  count: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { intervalMs: 5000, count: 5 };

/**
 * Watches for silence on a connection. Any packet from the daemon counts as proof of life, so
 * a busy connection never sends PINGs; an idle one sends one per interval and gives up after
 * `count` of them go unanswered.
 */
export class KeepaliveMonitor {
  private timer: NodeJS.Timeout | undefined;
  private lastSeen = Date.now();
  private unanswered = 0;
  private suspended = false;

  constructor(
    private readonly options: KeepaliveOptions,
    private readonly sendPing: () => void,
    private readonly onDead: (silentMs: number) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    // Keepalive alone must not keep the process running.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  seen(): void {
    this.lastSeen = Date.now();
    this.unanswered = 0;
  }

  /**
   * While we deliberately stop reading the socket (stream backpressure) the daemon's packets,
   * PONGs included, wait in the kernel; that silence is ours, not the daemon's.
   */
  setSuspended(suspended: boolean): void {
    this.suspended = suspended;
    if (!suspended) this.seen();
  }

  private tick(): void {
    if (this.suspended) return;
    const silent = Date.now() - this.lastSeen;
    if (silent < this.options.intervalMs) return;
    if (this.unanswered >= this.options.count) {
      this.stop();
      this.onDead(silent);
      return;
    }
    this.unanswered++;
    this.sendPing();
  }
}
