import { EventEmitter } from 'node:events';
import type { Libvirt } from './client.js';

export interface ReconnectOptions {
  /** First retry delay; doubles per failed attempt. Default 100 ms. */
  initialDelayMs?: number;
  /** Upper bound for the delay. Default 5 s. */
  maxDelayMs?: number;
}

export interface ReconnectorEvents {
  /** A retry failed; another follows after `nextDelayMs`. */
  retry: [error: Error, attempt: number, nextDelayMs: number];
  /** The client is connected again, with its event subscriptions re-registered. */
  reconnected: [attempts: number];
}

/**
 * Reconnects a client whenever its connection is lost (daemon restart, crash, keepalive
 * timeout), retrying with exponential backoff. A requested `close()` is left alone. Opt-in,
 * because some callers would rather fail loudly than wait for the daemon.
 */
export class Reconnector extends EventEmitter<ReconnectorEvents> {
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  private readonly onClose = (err: Error | undefined): void => {
    if (err && !this.stopped) this.schedule(1, this.initialDelayMs);
  };

  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly client: Libvirt,
    options: ReconnectOptions = {},
  ) {
    super();
    this.initialDelayMs = options.initialDelayMs ?? 100;
    this.maxDelayMs = options.maxDelayMs ?? 5000;
  }

  start(): this {
    if (!this.stopped) return this;
    this.stopped = false;
    this.client.on('close', this.onClose);
    return this;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.client.off('close', this.onClose);
  }

  private schedule(attempt: number, delayMs: number): void {
    this.timer = setTimeout(() => void this.attempt(attempt, delayMs), delayMs);
  }

  private async attempt(attempt: number, delayMs: number): Promise<void> {
    if (this.stopped) return;
    try {
      await this.client.connect();
    } catch (err) {
      if (this.stopped) return;
      const next = Math.min(delayMs * 2, this.maxDelayMs);
      this.emit('retry', err as Error, attempt, next);
      this.schedule(attempt + 1, next);
      return;
    }
    this.emit('reconnected', attempt);
  }
}
