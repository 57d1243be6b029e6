import type { AdminCall } from './wire.js';

/** Bytes of a streamed payload; a `Readable` qualifies. */
export type ByteSource = AsyncIterable<Uint8Array | string>;

export interface UploadOptions {
  /** Called after each chunk is handed to the connection, with the running total of data bytes. */
  onProgress?: (sent: number) => void;
  /** Aborting closes the connection; the server then discards what it received. */
  signal?: AbortSignal;
}

/**
 * How calls reach qubesd. `call` returns the complete raw reply (type byte included); `stream` yields the
 * raw reply as it arrives, for the event methods that never finish on their own. Breaking out of the
 * stream (or aborting `signal`) must close the connection: that is how qubesd learns to unsubscribe.
 */
export interface Transport {
  call(call: AdminCall): Promise<Buffer>;
  stream(call: AdminCall, signal?: AbortSignal): AsyncIterable<Buffer>;
  /**
   * A call whose payload is `call.payload` followed by everything `source` yields, sent as it is read
   * (with backpressure, never held in memory as a whole): the volume imports. Returns the raw reply;
   * a reply that arrives before the payload is complete (an early error) stops the upload.
   */
  upload?(call: AdminCall, source: ByteSource, options?: UploadOptions): Promise<Buffer>;
}
