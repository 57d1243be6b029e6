import { inject, injectable } from 'tsyringe';

import type { Readable } from 'node:stream';

import type { App } from '../model/app.js';
import {
  ProtocolError,
  QubesException,
  QubesVMInvalidUUIDError,
  QubesVMNotFoundError,
  pyRepr,
} from '../model/errors.js';
import type { Vm } from '../model/vm.js';
import { validateName } from '../model/validate.js';
import type { CallContext, EventSink } from './call-context.js';
import type { MethodSpec } from './method.js';
import type { ApiServices } from './services.js';
import type { Request } from '@odyssey/wire';
import type { Saver } from '../persist/saver.js';
import { TOKENS } from '../tokens.js';
import { API_TOKENS } from './tokens.js';

export type Outcome =
  | { readonly kind: 'ok'; readonly body: string | undefined }
  | { readonly kind: 'exception'; readonly type: string; readonly message: string }
  /** Streaming method finished: the messages went out through the sink. */
  | { readonly kind: 'streamed' }
  /** Not a Qubes error: upstream closes without a reply. */
  | { readonly kind: 'abort'; readonly error: unknown };

/**
 * Upstream's pattern, matched at the start only: past the fourth dash any
 * characters pass it, and uuid.UUID() then takes upper-case hex there too.
 */
const UUID_REF = /^uuid:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]*/;

/** What uuid.UUID() accepts after the prefix check: 32 hex digits once the dashes are gone. */
function canonicalUuid(text: string): string {
  const hex = text.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error('badly formed hexadecimal UUID string');
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** qubes.api.decode_vm: a name, or `uuid:<uuid>`; non-ASCII fails the decode before anything else. */
function decodeVm(app: App, ref: string): Vm {
  if (/[^\x00-\x7f]/.test(ref)) throw new ProtocolError('request header contains non-ASCII characters');
  if (ref.startsWith('uuid:')) {
    if (ref.length !== 41 || !UUID_REF.test(ref)) throw new QubesVMInvalidUUIDError(ref.slice(5));
    const vm = app.domains.byUuid(canonicalUuid(ref.slice(5)));
    if (!vm) throw new QubesVMNotFoundError(ref);
    return vm;
  }
  validateName(ref);
  return app.domains.get(ref);
}

/** Runs one parsed request through upstream's generic checks, then its handler (admin-api-reference §1.2). */
@injectable()
export class Dispatcher {
  private readonly methods: ReadonlyMap<string, MethodSpec>;

  constructor(
    @inject(TOKENS.App) private readonly app: App,
    @inject(API_TOKENS.Services) private readonly services: ApiServices,
    @inject(API_TOKENS.Methods) methods: readonly MethodSpec[],
    @inject(TOKENS.Saver) private readonly saver: Saver,
  ) {
    this.methods = new Map(methods.map((m) => [m.name, m]));
  }

  isStreaming(method: string): boolean {
    return this.methods.get(method)?.streaming === true;
  }

  streamsPayload(method: string): boolean {
    return this.methods.get(method)?.streamsPayload === true;
  }

  async dispatch(req: Request, stream: EventSink, payloadStream?: Readable): Promise<Outcome> {
    try {
      const { spec, ctx } = this.check(req, stream, payloadStream);
      const body = await spec.handler(ctx);
      if (spec.streaming) return { kind: 'streamed' };
      if (spec.access === 'w' && !spec.noSave) await this.saver.save(ctx.dest);
      return { kind: 'ok', body };
    } catch (e) {
      if (e instanceof QubesException) return { kind: 'exception', type: e.name, message: e.message };
      return { kind: 'abort', error: e };
    }
  }

  /** The generic checks, in upstream's order; the call's context when they pass. */
  private check(
    req: Request,
    stream: EventSink,
    payloadStream?: Readable,
  ): { spec: MethodSpec; ctx: CallContext } {
    // Upstream decodes source and destination (looking them up) before the argument and method.
    const src = decodeVm(this.app, req.src);
    const dest = decodeVm(this.app, req.dest);
    if (/[^\x00-\x7f]/.test(req.method + req.arg)) {
      throw new ProtocolError('request header contains non-ASCII characters');
    }
    const spec = this.methods.get(req.method);
    if (!spec) throw new ProtocolError(`no such method: ${pyRepr(req.method)}`);
    if (spec.payload === 'required' && req.payload.length === 0) throw new ProtocolError('expected payload');
    if (spec.payload === 'none' && req.payload.length > 0) throw new ProtocolError('unexpected payload');
    if (spec.arg === 'required' && req.arg === '') throw new ProtocolError('expected an argument');
    if (spec.arg === 'none' && req.arg !== '') throw new ProtocolError('unexpected argument');
    if (spec.dest === 'dom0' && !dest.isAdminVm)
      throw new ProtocolError('expected destination to be AdminVM');
    if (spec.dest === 'vm' && dest.isAdminVm) {
      throw new ProtocolError('expected destination to not be AdminVM');
    }
    const ctx = {
      app: this.app,
      method: spec.name,
      src,
      dest,
      arg: req.arg,
      payload: req.payload,
      services: this.services,
      stream,
      payloadStream,
    };
    return { spec, ctx };
  }
}
