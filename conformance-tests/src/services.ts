/** The qrexec services the checks install, in guests and in dom0. */
export const ECHO_SERVICE = '#!/bin/sh\nprintf "%s says: " "$QREXEC_REMOTE_DOMAIN"\nexec cat\n';
/** Reads everything and answers its byte count: the sink of the throughput measurement. */
export const SINK_SERVICE = '#!/bin/sh\nwc -c\n';
/** Exits with its argument: `test.Exit+3` exits 3. */
export const EXIT_SERVICE = '#!/bin/sh\nexit "$1"\n';
