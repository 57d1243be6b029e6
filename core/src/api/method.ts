import type { CallContext } from './call-context.js';

/** Which qubes a method may act on; drives the generated default policy includes. */
export type Scope = 'global' | 'local';

/**
 * What a method does: reads only, writes (qubes.xml is saved after it), executes
 * (acts on a running domain, nothing to save), or both reads and executes.
 * Anything but 'r' puts the method in the policy's rwx include.
 */
export type Access = 'r' | 'w' | 'x' | 'rx';

/** Which destination a method accepts: dom0 only, any qube but dom0, or any. */
export type Dest = 'dom0' | 'vm' | 'any';

/** Whether the call's argument (or payload) must be non-empty, must be empty, or may be either. */
export type Want = 'required' | 'none' | 'optional';

/**
 * One Admin API method. The method table (./method-table.ts) is a list of these
 * and is the single source of truth for dispatch, argument checks and the
 * generated default qrexec policy.
 */
export interface MethodSpec {
  readonly name: string;
  readonly scope: Scope;
  readonly access: Access;
  readonly dest: Dest;
  readonly arg: Want;
  readonly payload: Want;
  /** Kept out of the generated policy (as upstream does for Create.AdminVM). */
  readonly noPolicy?: boolean;
  /** Answers with EVENT messages until the client goes, never with OK. */
  readonly streaming?: boolean;
  /** A write method that leaves qubes.xml alone: it persists to its own files (firewall, notes) or nothing (Console). */
  readonly noSave?: boolean;
  /** The payload may be of any size and reaches the handler as ctx.payloadStream. */
  readonly streamsPayload?: boolean;
  /**
   * Its qrexec service is a script that calls the method and works with the
   * answer (admin.vm.Console relays the console pty), so no qrexec service
   * links it to the admin socket.
   */
  readonly qrexecScript?: boolean;
  readonly handler: MethodHandler;
}

/**
 * A handler returns the OK body (string, or undefined for an empty body), or
 * takes over the connection for streaming methods via ctx.stream.
 */
export type MethodHandler = (ctx: CallContext) => Promise<string | undefined> | string | undefined;
