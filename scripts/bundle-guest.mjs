// Bundles each program the Debian template runs inside a qube (agent/dist/<entry>.js) into one
// file, agent/dist/bundle/<entry>.mjs, for the template builder to install. A qube starts several
// node processes while it boots (the agent, odyssey-network, the post-install commands); loading ~100
// modules each was about half of their start-up under user-mode TCG (templates/README.md, Start-up).
// Debian 12's nodejs is 18; koffi stays a package beside the bundles: it finds its native module
// relative to its own files.
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const agent = join(dirname(fileURLToPath(import.meta.url)), '..', 'agent');
const GUEST_ENTRIES = [
  'kvm-guest-main',
  'xen-guest-main',
  'agent-main',
  'net-daemon-main',
  'qubesdb-cmd-main',
  'features-request-main',
  'client-vm-main',
];

// A program taken off the list must not linger there for the template builder to find.
await rm(join(agent, 'dist', 'bundle'), { recursive: true, force: true });
await build({
  entryPoints: GUEST_ENTRIES.map((e) => join(agent, 'dist', `${e}.js`)),
  outdir: join(agent, 'dist', 'bundle'),
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18',
  external: ['koffi'],
  // CommonJS dependencies (commander) call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
