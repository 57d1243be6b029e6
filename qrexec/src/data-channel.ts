import type { Duplex } from 'node:stream';
import { QREXEC_EXIT_PROBLEM, QREXEC_EXIT_SERVICE_NOT_FOUND } from './constants.js';
import {
  runCallerSide,
  runServiceSide,
  sendExitCodeOnly,
  type CallerSideStreams,
  type ServiceSideStreams,
} from './data-phase.js';
import { MessageReader } from './framing.js';
import { exchangeHello } from './handshake.js';
import { findService } from './service-lookup.js';
import { startService, type ServiceInvocation } from './service-process.js';

/** Starts the service end of a call; a number instead of streams is the exit code to report without running. */
export type ServiceStarter = () => Promise<ServiceSideStreams | number>;

/** Serves one data vchan from the service side: HELLO, then the service's streams, then EXIT_CODE. */
export async function serveDataChannel(channel: Duplex, start: ServiceStarter): Promise<void> {
  const reader = new MessageReader(channel);
  const version = await exchangeHello(channel, reader);
  const started = await start();
  if (typeof started === 'number') await sendExitCodeOnly(channel, started);
  else await runServiceSide(channel, reader, version, started);
}

/** A starter that looks the service up in `dirs` and runs it: 127 when missing, 125 when it will not start. */
export function serviceFromDirs(
  dirs: readonly string[],
  call: ServiceInvocation,
  runAs: readonly string[] = [],
): ServiceStarter {
  return async () => {
    const entry = await findService(dirs, call.serviceAndArg);
    if (!entry) return QREXEC_EXIT_SERVICE_NOT_FOUND;
    return startService(entry, call, runAs).catch(() => QREXEC_EXIT_PROBLEM);
  };
}

/** Runs one data vchan from the caller side; resolves with the service's exit code. */
export async function callOverDataChannel(channel: Duplex, streams: CallerSideStreams): Promise<number> {
  const reader = new MessageReader(channel);
  const version = await exchangeHello(channel, reader);
  return runCallerSide(channel, reader, version, streams);
}
