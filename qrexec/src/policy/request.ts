import { RequestError } from './errors.js';
import { splitServiceName } from './parser.js';
import { indexSystemInfo, type DomainIndex, type SystemInfo } from './system-info.js';
import { parseToken, verifyIntended, type VmToken } from './tokens.js';

/** What every engine (current and R4.0) hands to a decision. */
export interface RequestBase {
  readonly service: string;
  /** Starts with `+`; `+` alone is the empty argument. */
  readonly argument: string;
  /** The qube the policy is evaluated for (the RemoteVM when a relay names one). */
  readonly source: string;
  /** The normalised intended target, echoed as `requested_target=`. */
  readonly target: string;
  /** Set when a relay qube called on behalf of a RemoteVM. */
  readonly requestedSource: string | null;
  readonly domains: DomainIndex;
}

export interface PolicyRequest extends RequestBase {
  readonly targetToken: VmToken;
}

export interface CallInit {
  readonly source: string;
  /** What the caller asked for; `''` means no target. */
  readonly target: string;
  /** `SERVICE` or `SERVICE+ARGUMENT`. */
  readonly call: string;
  /** A RemoteVM the source relays for. */
  readonly requestedSource?: string | null;
}

/**
 * Validates and normalises a call: splits the service at the first `+`,
 * turns `''` and unknown qube names into `@default`, and refuses targets a
 * caller may not name (`@anyvm`, `@tag:…`, non-template `@dispvm:…`).
 * Throws AccessDenied (PolicySyntaxError for malformed targets).
 */
export function createRequest(init: CallInit, systemInfo: SystemInfo): PolicyRequest {
  const domains = indexSystemInfo(systemInfo);
  const [service, argument] = splitServiceName(init.call);
  const token = verifyIntended(
    parseToken(init.target === '' ? '@default' : init.target, 'intended'),
    domains,
  );
  let source = init.source;
  const requestedSource = init.requestedSource ? init.requestedSource : null;
  if (requestedSource !== null) {
    const info = domains.get(requestedSource);
    if (!info) throw new RequestError(`unknown requested source qube '${requestedSource}'`);
    if (info.type !== 'RemoteVM')
      throw new RequestError(`${requestedSource}: requested source is only authorized for RemoteVM`);
    if (info.relayvm !== source) throw new RequestError(`${source} is not a relay for ${requestedSource}`);
    source = requestedSource;
  }
  return { service, argument, source, target: token.text, targetToken: token, requestedSource, domains };
}
