import { REPLY_EVENT } from '@odyssey/wire';

import { QubesDaemonCommunicationError } from './errors.js';
import { parseResponse } from './wire.js';

/** One message of an `admin.Events` / `admin.vm.Stats` stream. `subject` is '' for global (app) events. */
export interface AdminEvent {
  subject: string;
  event: string;
  kwargs: Record<string, string>;
}

/**
 * Incremental decoder for `1\0subject\0event\0(key\0value\0)*\0` messages. Chunk boundaries carry no
 * meaning on a stream socket, so a message (or a single field) may arrive in any number of pieces.
 */
export class EventStreamDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private sawEvent = false;

  push(chunk: Buffer): AdminEvent[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const events: AdminEvent[] = [];
    // An exception reply (e.g. a denied call) can only come first; keep it whole for `end`.
    if (!this.sawEvent && this.pending.length >= 1 && this.pending[0] !== REPLY_EVENT) return events;
    for (;;) {
      const parsed = decodeOne(this.pending);
      if (!parsed) break;
      this.sawEvent = true;
      events.push(parsed.event);
      this.pending = this.pending.subarray(parsed.length);
    }
    return events;
  }

  /** Call at end of stream: throws the reply's error if the stream was not events, or if it was cut short. */
  end(): void {
    if (!this.sawEvent) {
      parseResponse(this.pending);
      throw new QubesDaemonCommunicationError('Invalid response format');
    }
    if (this.pending.length > 0) throw new QubesDaemonCommunicationError('Event stream ended mid-message');
  }
}

function decodeOne(buf: Buffer): { event: AdminEvent; length: number } | undefined {
  if (buf.length < 2) return undefined;
  if (buf[0] !== REPLY_EVENT || buf[1] !== 0) throw new QubesDaemonCommunicationError('Invalid event format');
  let offset = 2;
  const next = (): string | undefined => {
    const end = buf.indexOf(0, offset);
    if (end < 0) return undefined;
    const field = buf.toString('utf8', offset, end);
    offset = end + 1;
    return field;
  };
  const subject = next();
  const event = subject === undefined ? undefined : next();
  if (subject === undefined || event === undefined) return undefined;
  const kwargs: Record<string, string> = {};
  for (;;) {
    const key = next();
    if (key === undefined) return undefined;
    if (key === '') return { event: { subject, event, kwargs }, length: offset };
    const value = next();
    if (value === undefined) return undefined;
    kwargs[key] = value;
  }
}
