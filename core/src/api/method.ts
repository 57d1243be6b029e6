import type { CallContext } from './call-context.js';

/** Which qubes a method may act on; drives the generated default policy includes. */
export type Scope = 'global' | 'local';

/**
 * One Admin API method. The method table (./method-table.ts) is a list of these
 * and is the single source of truth for dispatch, argument checks and the
 * generated default qrexec policy.
 *
 * destAdminvm: true = destination must be dom0, false = must not be, null = any.
 * wantsArg / wantsPayload: true = required non-empty, false = must be empty, null = optional.
 */
export interface MethodSpec {
  readonly name: string;
  readonly scope: Scope;
  readonly read: boolean;
  readonly write: boolean;
  readonly execute: boolean;
  readonly destAdminvm: boolean | null;
  readonly wantsArg: boolean | null;
  readonly wantsPayload: boolean | null;
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
