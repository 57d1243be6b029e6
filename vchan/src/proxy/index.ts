export { ProxyVchanTransport, type ProxyVchanTransportOptions } from './proxy-transport.js';
export { serveVchanProxy, type VchanProxy } from './proxy-server.js';
