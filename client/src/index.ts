export { AdminClient } from './admin-client.js';
export type { Transport, ByteSource, UploadOptions } from './transport.js';
export { SocketTransport, DEFAULT_SOCKET_PATH } from './socket-transport.js';
export { QrexecTransport, DEFAULT_QREXEC_CLIENT, type QrexecTransportOptions } from './qrexec-transport.js';
export { encodeRequest, parseResponse, serviceName, EMPTY_RESPONSE_MESSAGE, type AdminCall } from './wire.js';
export * from './errors.js';
export { EventStreamDecoder, type AdminEvent } from './events.js';
export {
  parsePropertyValue,
  parseAllProperties,
  parsePropertyLines,
  parseTypedText,
  typedValue,
  displayValue,
  type PropertyType,
  type PropertyValue,
  type TypedValue,
} from './properties.js';
export { FirewallRule, FirewallRuleError } from './firewall-rule.js';
export type { Caller, Uploader } from './api/caller.js';
export { PropertyApi } from './api/property-api.js';
export {
  VmApi,
  parseVmList,
  isRunning,
  type VmInfo,
  type PowerState,
  type VmCurrentState,
  type CreateVmOptions,
  type ShutdownOptions,
} from './api/vm-api.js';
export { FeatureApi, type FeatureLookup } from './api/feature-api.js';
export { TagApi } from './api/tag-api.js';
export { LabelApi } from './api/label-api.js';
export { FirewallApi } from './api/firewall-api.js';
export { PoolApi, VolumeApi, type VolumeImportOptions, type BoolLike } from './api/storage-api.js';
export { parseSize, formatBytes } from './size.js';
