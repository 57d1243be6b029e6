import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { BackendLoadError, loadBackend, type Backend, type VmmCapabilities } from '@odyssey/hal';

/**
 * The backend as the suite itself holds it, loaded through the HAL's loader exactly as odysseyd
 * loads it, with a runtime dir of its own: the hal category drives it directly, the runner reads
 * its declaration, and a check may look at a domain from outside the daemon through it.
 */
export interface BackendUnderTest {
  /** The `--backend` argument. */
  readonly spec: string;
  readonly runtimeDir: string;
  /** The open instance (replaced by `reload`). */
  readonly current: Backend;
  readonly capabilities: VmmCapabilities;
  /** Closes the current instance and opens a fresh one on the same runtime dir, as a restarted daemon does. */
  reload(): Promise<Backend>;
  close(): Promise<void>;
}

/**
 * A backend that loaded but whose open() failed (its hypervisor is not there): unlike one that
 * does not load, it has said what it is, so the run can be reported as not run, with the reason.
 */
export class BackendOpenError extends BackendLoadError {
  constructor(
    message: string,
    /** The backend's declaration, when capabilities() gives a whole one. */
    readonly capabilities: VmmCapabilities | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** capabilities() of a backend that may be broken: only a declaration with a name and a class counts. */
function declarationOf(backend: Backend): VmmCapabilities | undefined {
  try {
    const caps = backend.vmm.capabilities();
    return typeof caps.name === 'string' && typeof caps.isolation === 'string' ? caps : undefined;
  } catch {
    return undefined;
  }
}

/** Loads and opens the backend; a failure is a BackendLoadError carrying the loader's or open()'s message. */
export async function openBackendUnderTest(
  spec: string,
  log: (level: string, message: string) => void,
): Promise<BackendUnderTest> {
  const runtimeDir = await mkdtemp(join(tmpdir(), 'odyssey-conformance-hal-'));
  const create = async (): Promise<Backend> => {
    const backend = await loadBackend(spec, { runtimeDir, log });
    try {
      await backend.vmm.open();
    } catch (e) {
      throw new BackendOpenError(
        `backend ${spec}: open() failed: ${e instanceof Error ? e.message : String(e)}`,
        declarationOf(backend),
        { cause: e },
      );
    }
    return backend;
  };
  let current: Backend;
  try {
    current = await create();
  } catch (e) {
    await rm(runtimeDir, { recursive: true, force: true });
    throw e;
  }
  return {
    spec,
    runtimeDir,
    get current() {
      return current;
    },
    capabilities: current.vmm.capabilities(),
    reload: async () => {
      await current.vmm.close();
      current = await create();
      return current;
    },
    close: async () => {
      await current.vmm.close().catch(() => undefined);
      await rm(runtimeDir, { recursive: true, force: true });
    },
  };
}
