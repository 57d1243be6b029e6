export {
  ADMIN_DOMAIN,
  ChannelMux,
  OpenRefused,
  type BoundMuxVchan,
  type ChannelSide,
  type Relay,
  type RelayOptions,
  type RelayedStream,
} from './channel-mux.js';
export { FrameDecoder, FrameError, FrameType, encodeFrame, type Frame } from './frames.js';
export { GuestPort, findVirtioPort, type GuestPortOptions, type PortHandle } from './guest-port.js';
export { KvmGuestTransport, type KvmGuestTransportOptions } from './guest-transport.js';
export { KvmHostTransport, type KvmHostTransportOptions } from './host-transport.js';
export { MuxVchan, type MuxVchanRings } from './mux-vchan.js';
export { KVM_VCHAN_PORT_NAME } from './port-name.js';
