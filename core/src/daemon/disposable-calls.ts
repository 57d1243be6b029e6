import type { DisposableFactory } from '@odyssey/qrexec';

import type { Dispatcher } from '../api/dispatcher.js';
import type { Log } from '../log.js';

/** Exceptions that mean the disposable is already gone: its end came first (it stopped, auto_cleanup ran). */
const ALREADY_GONE = new Set(['QubesVMNotFoundError', 'QubesVMNotStartedError', 'QubesVMNotRunningError']);

/** An Admin API call failed; `type` is the exception's upstream name. */
class AdminCallError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Events of these internal calls go nowhere: the app's own event bus already tells every subscriber. */
const NO_EVENTS = { send: (): void => undefined, closed: new Promise<void>(() => undefined) };

/**
 * Disposables for `@dispvm` qrexec calls, made as upstream's qrexec-daemon
 * makes them: dom0 calls admin.vm.CreateDisposable on the disposable template,
 * then admin.vm.Start, and admin.vm.Kill when the call is over (the DispVM's
 * auto_cleanup then removes it from qubes.xml and the backend). The calls go
 * through the dispatcher, so they fire the same events and save the same
 * state as a client's calls would.
 */
export class DisposableCalls implements DisposableFactory {
  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly log: Log,
  ) {}

  async create(template: string, source: string): Promise<string> {
    const name = await this.call('admin.vm.CreateDisposable', template);
    this.log('info', `disposable ${name} for a qrexec call from ${source}`);
    try {
      await this.call('admin.vm.Start', name);
    } catch (error) {
      // A disposable that never ran is not removed by auto_cleanup (it never stops).
      await this.call('admin.vm.Remove', name).catch((e: unknown) =>
        this.log('warn', `could not remove disposable ${name}: ${String(e)}`),
      );
      throw error;
    }
    return name;
  }

  async destroy(name: string): Promise<void> {
    try {
      await this.call('admin.vm.Kill', name);
    } catch (error) {
      if (!(error instanceof AdminCallError && ALREADY_GONE.has(error.type))) throw error;
    }
  }

  private async call(method: string, dest: string): Promise<string> {
    const outcome = await this.dispatcher.dispatch(
      { method, arg: '', src: 'dom0', dest, payload: Buffer.alloc(0) },
      NO_EVENTS,
    );
    switch (outcome.kind) {
      case 'ok':
        return outcome.body ?? '';
      case 'exception':
        throw new AdminCallError(outcome.type, `${method} ${dest}: ${outcome.message}`);
      case 'abort':
        throw outcome.error instanceof Error ? outcome.error : new Error(String(outcome.error));
      case 'streamed':
        throw new Error(`${method} streams: not an internal call`);
    }
  }
}
