import { SocketVchanTransport, type SocketVchanTransportOptions } from './socket-transport.js';

export { SocketVchan, type SocketVchanRings } from './socket-vchan.js';
export {
  SocketVchanTransport,
  type BoundSocketVchan,
  type SocketVchanTransportOptions,
} from './socket-transport.js';
export { defaultSocketDir, vchanSocketPath } from './socket-path.js';
export { O_PATH, connectOnce } from './unix-socket.js';

/** Factory by transport name, so a composition root can pick the transport from configuration. */
export function createSocketTransport(options: SocketVchanTransportOptions): SocketVchanTransport {
  return new SocketVchanTransport(options);
}

export * from './kvm/index.js';
export * from './proxy/index.js';
// koffi and libxenvchan load on the Xen transport's first listen/connect, not here.
export * from './xen/index.js';
