import type { Caller, Uploader } from './api/caller.js';
import { FeatureApi } from './api/feature-api.js';
import { FirewallApi } from './api/firewall-api.js';
import { LabelApi } from './api/label-api.js';
import { PropertyApi } from './api/property-api.js';
import { PoolApi, VolumeApi } from './api/storage-api.js';
import { TagApi } from './api/tag-api.js';
import { VmApi } from './api/vm-api.js';
import { EventStreamDecoder, type AdminEvent } from './events.js';
import { QubesNotImplementedError } from './errors.js';
import type { ByteSource, Transport, UploadOptions } from './transport.js';
import { parseResponse, type AdminCall } from './wire.js';

/**
 * Typed Admin API client. Every call is independent (qubesd serves one call per connection), so one
 * client can be shared freely; nothing is cached.
 */
export class AdminClient {
  readonly vms: VmApi;
  readonly features: FeatureApi;
  readonly tags: TagApi;
  readonly labels: LabelApi;
  readonly firewall: FirewallApi;
  readonly pools: PoolApi;
  readonly volumes: VolumeApi;
  /** System-wide properties (`admin.property.*`). */
  readonly globalProperties: PropertyApi;

  private readonly caller: Caller;

  constructor(readonly transport: Transport) {
    this.caller = (method, dest, arg, payload) => this.call(method, dest, arg, payload);
    this.vms = new VmApi(this.caller);
    this.features = new FeatureApi(this.caller);
    this.tags = new TagApi(this.caller);
    this.labels = new LabelApi(this.caller);
    this.firewall = new FirewallApi(this.caller);
    this.pools = new PoolApi(this.caller);
    const uploader: Uploader = (method, dest, arg, prefix, source, options) =>
      this.upload(method, dest, arg, prefix, source, options);
    this.volumes = new VolumeApi(this.caller, uploader);
    this.globalProperties = new PropertyApi(this.caller, 'admin.property.', 'dom0');
  }

  /** A qube's properties (`admin.vm.property.*`); dom0's own properties too. */
  vmProperties(vm: string): PropertyApi {
    return new PropertyApi(this.caller, 'admin.vm.property.', vm);
  }

  /** Any method, raw: returns the OK body or throws the mapped QubesError. */
  async call(method: string, dest: string, arg = '', payload: string | Uint8Array = ''): Promise<Buffer> {
    return parseResponse(await this.transport.call(toCall(method, dest, arg, payload)));
  }

  /**
   * Any method, with `prefix` then the bytes of `source` as its payload, streamed (see
   * `Transport.upload`): returns the OK body or throws the mapped QubesError.
   */
  async upload(
    method: string,
    dest: string,
    arg: string,
    prefix: string | Uint8Array,
    source: ByteSource,
    options?: UploadOptions,
  ): Promise<Buffer> {
    if (!this.transport.upload) {
      throw new QubesNotImplementedError(
        'This transport cannot stream a payload',
        'QubesNotImplementedError',
      );
    }
    return parseResponse(await this.transport.upload(toCall(method, dest, arg, prefix), source, options));
  }

  /** `admin.Events`: dest dom0 for everything, or a qube name for that qube's events only. */
  events(dest = 'dom0', signal?: AbortSignal): AsyncGenerator<AdminEvent, void, undefined> {
    return this.eventStream('admin.Events', dest, signal);
  }

  /** `admin.vm.Stats`: `connection-established`, then periodic `vm-stats` events per running qube. */
  stats(dest = 'dom0', signal?: AbortSignal): AsyncGenerator<AdminEvent, void, undefined> {
    return this.eventStream('admin.vm.Stats', dest, signal);
  }

  private async *eventStream(
    method: string,
    dest: string,
    signal?: AbortSignal,
  ): AsyncGenerator<AdminEvent, void, undefined> {
    const decoder = new EventStreamDecoder();
    for await (const chunk of this.transport.stream(toCall(method, dest, '', ''), signal)) {
      yield* decoder.push(chunk);
    }
    if (signal?.aborted) return;
    decoder.end();
  }
}

function toCall(method: string, dest: string, arg: string, payload: string | Uint8Array): AdminCall {
  return { method, dest, arg, payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload };
}
