import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { replayJournal } from '../../src/persist/journal.js';

/**
 * The qubes.xml a daemon on `stateDir` would start from: the journal's last
 * whole record if it has one, else qubes.xml (which lags the journal until a
 * checkpoint). For tests that look at the durable state of a running or killed daemon.
 */
export async function persistedXml(stateDir: string): Promise<string> {
  const journal = await readFile(join(stateDir, 'qubes.xml.journal')).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return Buffer.alloc(0);
    throw e;
  });
  return replayJournal(journal).document ?? (await readFile(join(stateDir, 'qubes.xml'), 'utf8'));
}
