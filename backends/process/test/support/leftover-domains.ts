import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Kills the process group of every domain an odysseyd on `stateDir` left behind (the process
 * backend's records under run/process), so that a test that failed half-way leaves no agents.
 */
export async function killLeftoverDomains(stateDir: string): Promise<void> {
  const domains = join(stateDir, 'run', 'process');
  for (const name of await readdir(domains).catch(() => [])) {
    const record = await readFile(join(domains, name, 'domain.json'), 'utf8').catch(() => undefined);
    if (!record) continue;
    try {
      process.kill(-(JSON.parse(record) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
