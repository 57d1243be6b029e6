#!/usr/bin/env node
// The qrexec agent of a Xen domU running the Debian template (systemd starts it in place of the
// KVM agent when odyssey-xen-generator finds Xen) on the Xen vchan transport (libxenvchan through
// koffi), talking to dom0. The busybox Xen image bundles the same program
// (scripts/guest-agent-xen.ts). Options and what it serves: serve-guest.ts.
import { XenVchanTransport } from '@odyssey/vchan';
import { serveGuest } from './serve-guest.js';
import { consoleLog } from './console-log.js';

const log = consoleLog('odyssey-guest');
await serveGuest(new XenVchanTransport({ log }), log);
