export { Libvirt, type LibvirtEvents, type LibvirtOptions } from './client.js';
export { Reconnector, type ReconnectOptions, type ReconnectorEvents } from './reconnect.js';
export {
  RpcConnection,
  type Decoder,
  type Encoder,
  type RpcConnectionEvents,
  type RpcConnectionOptions,
  type StreamSink,
} from './connection.js';
export {
  ConnectionClosedError,
  ErrorCode,
  ErrorLevel,
  LibvirtError,
  isLibvirtError,
  type RemoteErrorFields,
} from './errors.js';
export {
  DomainEventId,
  EventsLostError,
  LIFECYCLE_QUEUE_MAX,
  LifecycleEventType,
  LifecycleSubscription,
  StartedDetail,
  StoppedDetail,
  type DomainLifecycleEvent,
} from './events.js';
export { DEFAULT_KEEPALIVE, type KeepaliveOptions } from './keepalive.js';
export { PacketStatus, PacketType, Program, type PacketHeader } from './packet.js';
export {
  resolveSocket,
  UnsupportedUriError,
  type DaemonMode,
  type ResolvedSocket,
  type SocketOptions,
} from './sockets.js';
export { DownloadStream, UploadStream } from './stream.js';
export { XdrError, XdrReader, XdrWriter } from './xdr.js';
export {
  AuthType,
  AuthUnsupportedError,
  HostApi,
  parseVersion,
  type NodeInfo,
} from './procedures/connect.js';
export {
  CreateFlags,
  DeviceModifyFlags,
  DefineFlags,
  DestroyFlags,
  DomainApi,
  DomainState,
  ListDomainsFlags,
  MemoryStatTag,
  ShutdownFlags,
  SuspendTarget,
  UndefineFlags,
  XmlFlags,
  type DomainInfo,
  type DomainStateInfo,
  type MemoryStat,
} from './procedures/domain.js';
export {
  uuidFromBytes,
  uuidToBytes,
  type Domain,
  type StoragePool,
  type StorageVol,
} from './procedures/handles.js';
export { Proc } from './procedures/numbers.js';
export {
  ListPoolsFlags,
  PoolApi,
  PoolBuildFlags,
  PoolCreateFlags,
  PoolState,
  VolCreateFlags,
  VolDeleteFlags,
  VolType,
  VolumeApi,
  type PoolInfo,
  type TransferRange,
  type VolInfo,
} from './procedures/storage.js';
export type { TypedParamValue } from './procedures/typed-params.js';
