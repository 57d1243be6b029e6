#!/usr/bin/env node
// The qrexec agent of a KVM guest (the busybox image bundles it, the Debian template runs it as a
// systemd service) on the KVM vchan transport, owning the guest's one virtio-serial port. Options
// and what it serves: serve-guest.ts.
import { KvmGuestTransport } from '@odyssey/vchan';
import { serveGuest } from './serve-guest.js';
import { consoleLog } from './console-log.js';

const log = consoleLog('odyssey-guest');
const transport = await KvmGuestTransport.open({ log });
log(`vchan channel on ${transport.devicePath}`);
await serveGuest(transport, log);
