import type { Readable } from 'node:stream';

import type { App } from '../model/app.js';
import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';
import type { ApiServices } from './services.js';

/** Event arguments in the order they go on the wire, values already str()-ed. */
export type EventArgs = readonly (readonly [string, string])[];

/** Where a streaming method (admin.Events, admin.vm.Stats) writes its messages. */
export interface EventSink {
  send(subject: string, event: string, args: EventArgs): void;
  /** Resolves when the client has gone. */
  readonly closed: Promise<void>;
}

/** Everything a handler gets for one call. */
export interface CallContext {
  readonly app: App;
  readonly method: string;
  readonly src: Vm;
  readonly dest: Vm;
  readonly arg: string;
  readonly payload: Buffer;
  readonly services: ApiServices;
  readonly stream: EventSink;
  /** For methods that stream their payload (volume import): the bytes after the header, to EOF. */
  readonly payloadStream?: Readable;
}

export type { QubesEvent };
