/**
 * What the policy resolves `@dispvm` and `@dispvm:TEMPLATE` calls to: a
 * disposable made for the one call (upstream's qrexec-daemon asks qubesd
 * for admin.vm.CreateDisposable and admin.vm.Start, then admin.vm.Kill
 * once the call is over; the DispVM's auto_cleanup removes it).
 */
export interface DisposableFactory {
  /**
   * Creates a disposable from the disposable template `template` and starts it;
   * resolves with its name once its qrexec agent is connected.
   */
  create(template: string, source: string): Promise<string>;
  /** Kills the disposable, which removes it; one already gone is not an error. */
  destroy(name: string): Promise<void>;
}

const DISPVM_PREFIX = '@dispvm:';

/** The template of a resolved `@dispvm:TEMPLATE` target, or undefined for any other target. */
export function disposableTemplateOf(target: string): string | undefined {
  return target.startsWith(DISPVM_PREFIX) ? target.slice(DISPVM_PREFIX.length) : undefined;
}
