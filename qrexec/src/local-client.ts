/**
 * What a dom0 client of odysseyd's local qrexec sockets needs (odyssey-qrexec-client), apart
 * from the package's index: a client starts for every call, and loading the whole package (the
 * daemon, the policy engine) cost it ~45 ms of its ~160 ms start, twice per disposable round trip.
 */
export { callLocalSocket, localSocketName } from './local-socket.js';
export { vmServiceCommand, withArgument } from './command.js';
export { QREXEC_EXIT_PROBLEM } from './constants.js';
