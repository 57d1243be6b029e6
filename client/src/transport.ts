import type { AdminCall } from './wire.js';

/**
 * How calls reach qubesd. `call` returns the complete raw reply (type byte included); `stream` yields the
 * raw reply as it arrives, for the event methods that never finish on their own. Breaking out of the
 * stream (or aborting `signal`) must close the connection: that is how qubesd learns to unsubscribe.
 */
export interface Transport {
  call(call: AdminCall): Promise<Buffer>;
  stream(call: AdminCall, signal?: AbortSignal): AsyncIterable<Buffer>;
}
