import { connect } from 'node:net';

import { request } from './harness.js';

export interface EventStream {
  /** Everything the stream sent so far, as raw text. */
  text(): string;
  /** Resolves once the stream holds `piece`, never on a clock; rejects if it ends without it. */
  until(piece: string): Promise<void>;
  close(): void;
}

/** An admin.Events stream of `dest` (dom0: every qube) on a daemon's socket. */
export function eventStream(socket: string, dest: string): EventStream {
  let buf = '';
  const s = connect(socket);
  s.on('connect', () => s.end(request('admin.Events', dest)));
  s.on('data', (c: Buffer) => (buf += c.toString('latin1')));
  const until = (piece: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!buf.includes(piece)) return;
        s.off('data', check);
        resolve();
      };
      s.on('data', check);
      s.once('close', () =>
        buf.includes(piece) ? resolve() : reject(new Error(`events ended without ${piece}`)),
      );
      check();
    });
  return { text: () => buf, until, close: () => s.destroy() };
}
