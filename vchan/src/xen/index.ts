export type { EventWatch, LibxenvchanBinding, VchanCtrl } from './binding.js';
export { defaultLibxenvchanPath, loadLibxenvchan } from './load.js';
export { DEFAULT_LIBXENVCHAN, LIBXENVCHAN_PACKAGE, LIBXENVCHAN_PROTOTYPES } from './prototypes.js';
export { measureRoundTrip, measureThroughput, type ThroughputResult } from './throughput.js';
export { XenVchanTransport, type BoundXenVchan, type XenVchanTransportOptions } from './transport.js';
export { XenVchan, type XenVchanRings } from './xen-vchan.js';
export { openXenstore, type Xenstore } from './xenstore.js';
