import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { onPath } from './daemon.js';

const run = promisify(execFile);

/**
 * Why libvirt's own domain schema cannot be checked here, or undefined when it can: every backend's
 * XML tests validate what they build against it, and skip with this reason otherwise.
 */
export const domainSchemaSkip: string | undefined =
  onPath('virt-xml-validate') && onPath('xmllint')
    ? undefined
    : 'virt-xml-validate or xmllint missing (libvirt-clients, libxml2-utils)';

/**
 * Checks `xml` against libvirt's domain schema with virt-xml-validate, and returns what it printed
 * ("… validates" on a valid document). Rejects with xmllint's complaint when the document is invalid.
 */
export async function validateDomainXml(xml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'domain-schema-'));
  try {
    const file = join(dir, 'domain.xml');
    await writeFile(file, xml);
    const { stdout, stderr } = await run('virt-xml-validate', [file, 'domain']);
    return stdout + stderr;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
