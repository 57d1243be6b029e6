import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A built file of a workspace package, found through its main entry: a path to spawn, not an import. */
function packageFile(pkg: string, file: string): string {
  return join(dirname(fileURLToPath(import.meta.resolve(pkg))), file);
}

export const ODYSSEYD = packageFile('@odyssey/core', 'daemon/main.js');
export const QREXEC_CLIENT = packageFile('@odyssey/core', 'daemon/qrexec-client-main.js');
export const POLICY_TOOL = packageFile('@odyssey/core', 'daemon/policy-cli-main.js');
export const QVM = packageFile('@odyssey/client', 'cli/main.js');
export const QREXEC_CLIENT_VM = packageFile('@odyssey/agent', 'client-vm-main.js');
/** The repository's scripts (private libvirtd, guest image), next to this package. */
export const SCRIPTS = fileURLToPath(new URL('../../scripts/', import.meta.url));
