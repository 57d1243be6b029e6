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

const UUID_REF = /^uuid:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]*$/;

/** qubes.api.decode_vm: a name, or `uuid:<uuid>`. */
function decodeVm(app: App, ref: string): Vm {
  if (ref.startsWith('uuid:')) {
    if (!UUID_REF.test(ref) || ref.length !== 41) throw new QubesVMInvalidUUIDError(ref.slice(5));
    const vm = app.domains.byUuid(ref.slice(5));
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
      if (spec.write && !spec.noSave) await this.saver.save(ctx.dest);
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
    if (/[^\x00-\x7f]/.test(req.method + req.arg + req.src + req.dest)) {
      throw new ProtocolError('request header contains non-ASCII characters');
    }
    const src = decodeVm(this.app, req.src);
    const dest = decodeVm(this.app, req.dest);
    const spec = this.methods.get(req.method);
    if (!spec) throw new ProtocolError(`no such method: ${pyRepr(req.method)}`);
    if (spec.wantsPayload === true && req.payload.length === 0) throw new ProtocolError('expected payload');
    if (spec.wantsPayload === false && req.payload.length > 0) throw new ProtocolError('unexpected payload');
    if (spec.wantsArg === true && req.arg === '') throw new ProtocolError('expected an argument');
    if (spec.wantsArg === false && req.arg !== '') throw new ProtocolError('unexpected argument');
    if (spec.destAdminvm === true && !dest.isAdminVm)
      throw new ProtocolError('expected destination to be AdminVM');
    if (spec.destAdminvm === false && dest.isAdminVm) {
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
