import type { Decoder, Encoder, RpcConnection } from '../connection.js';

/**
 * How procedure groups reach the current connection. A function rather than a connection so the
 * groups keep working after the client reconnects; it throws when there is no connection.
 */
export type RpcSource = () => RpcConnection;

/** Calls through `source`, turning "not connected" into a rejection like any other failure. */
export function call<T = void>(
  source: RpcSource,
  procedure: number,
  encode?: Encoder,
  decode?: Decoder<T>,
): Promise<T> {
  let rpc: RpcConnection;
  try {
    rpc = source();
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return rpc.call(procedure, encode, decode);
}
