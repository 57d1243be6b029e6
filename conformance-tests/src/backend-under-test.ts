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
      throw new BackendLoadError(
        `backend ${spec}: open() failed: ${e instanceof Error ? e.message : String(e)}`,
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
