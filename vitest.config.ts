import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string) => fileURLToPath(new URL(`./${pkg}/src/`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the workspace packages' sources, not their build output.
    alias: [
      { find: /^@odyssey\/hal$/, replacement: `${src('hal')}index.ts` },
      { find: /^@odyssey\/wire$/, replacement: `${src('wire')}index.ts` },
      { find: /^@odyssey\/qrexec$/, replacement: `${src('qrexec')}index.ts` },
      { find: /^@odyssey\/qubesdb$/, replacement: `${src('qubesdb')}index.ts` },
      { find: /^@odyssey\/core$/, replacement: `${src('core')}index.ts` },
      { find: /^@odyssey\/vchan$/, replacement: `${src('vchan')}index.ts` },
      { find: /^@odyssey\/libvirt$/, replacement: `${src('libvirt')}index.ts` },
      { find: /^@odyssey\/libvirt-hal$/, replacement: `${src('libvirt-hal')}index.ts` },
      { find: /^@odyssey\/client$/, replacement: `${src('client')}index.ts` },
      { find: /^@odyssey\/agent$/, replacement: `${src('agent')}index.ts` },
      { find: /^@odyssey\/backend-kvm$/, replacement: `${src('backends/kvm')}index.ts` },
      { find: /^@odyssey\/backend-xen$/, replacement: `${src('backends/xen')}index.ts` },
      { find: /^@odyssey\/backend-process$/, replacement: `${src('backends/process')}index.ts` },
    ],
  },
  test: {
    include: ['*/test/**/*.test.ts', 'backends/*/test/**/*.test.ts', 'conformance-tests/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
