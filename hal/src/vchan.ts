import type { Duplex } from 'node:stream';

/** libvchan connection states (qrexec-vchan reference §3.1). */
export type VchanState = 'disconnected' | 'connected' | 'waiting';

/**
 * One vchan: a reliable, ordered byte stream between two domains on one port,
 * with libvchan's semantics. The Duplex side carries the bytes (backpressure is
 * the ring filling up); the extra members mirror libvchan's introspection.
 */
export interface Vchan extends Duplex {
  readonly remoteDomain: string;
  readonly port: number;
  /** libvchan_is_open */
  state(): VchanState;
  /** libvchan_data_ready: bytes readable now without blocking. */
  dataReady(): number;
  /** libvchan_buffer_space: bytes writable now without blocking. */
  bufferSpace(): number;
}

export interface VchanListenOptions {
  /** Minimum ring sizes, as libvchan_server_init's read_min / write_min. */
  readonly readMin?: number;
  readonly writeMin?: number;
  /** Stops waiting for the client: aborting before it connects rejects listen(); after, it does nothing. */
  readonly signal?: AbortSignal;
}

/**
 * A vchan implementation for one hypervisor. `listen` is the libvchan server
 * side (resolves when the client connects), `connect` the client side (waits
 * for the server to appear, up to timeoutMs).
 */
export interface VchanTransport {
  readonly name: string;
  listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<Vchan>;
  connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<Vchan>;
}
