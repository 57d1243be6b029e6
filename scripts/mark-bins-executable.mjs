// tsc emits the workspaces' `bin` entry points without the executable bit, and npm only
// sets it when it links them at install time, before they are built. Set it after a build
// so the commands run directly (qrexec-client-vm is exec'd by the client, for one).
import { chmod, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { workspaces } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
for (const ws of workspaces) {
  const pkg = JSON.parse(await readFile(join(root, ws, 'package.json'), 'utf8'));
  const bins = typeof pkg.bin === 'string' ? [pkg.bin] : Object.values(pkg.bin ?? {});
  for (const bin of bins) await chmod(join(root, ws, bin), 0o755);
}
