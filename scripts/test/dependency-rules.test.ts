import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPCRUISE = join(ROOT, 'node_modules', '.bin', 'depcruise');

/** Violations of DESIGN.md's rules, planted in the real tree, each with the rule that must catch it. */
const PLANTED: readonly { file: string; text: string; rule: string }[] = [
  {
    file: 'agent/src/planted-core.ts',
    text: "export * from '@odyssey/core';\n",
    rule: 'nothing-imports-core',
  },
  {
    file: 'qrexec/src/policy/planted-api.ts',
    text: "export * from '@odyssey/wire';\n",
    rule: 'qrexec-imports-only-hal',
  },
  {
    file: 'qubesdb/src/planted-qrexec.ts',
    text: "export * from '@odyssey/qrexec';\n",
    rule: 'qubesdb-imports-only-hal',
  },
  {
    file: 'core/src/planted-transport.ts',
    text: "export * from '@odyssey/vchan';\n",
    rule: 'core-imports-hal-qrexec-wire',
  },
  {
    file: 'backends/kvm/src/planted-xen.ts',
    text: "export * from '@odyssey/backend-xen';\n",
    rule: 'backend-imports-hal-vchan-libvirt',
  },
  {
    file: 'conformance-tests/src/planted-libvirt.ts',
    text: "export * from '@odyssey/libvirt';\n",
    rule: 'conformance-talks-like-a-client',
  },
  {
    file: 'core/src/model/planted-up.ts',
    text: "export type { Lifecycle } from '../lifecycle/ports.js';\n",
    rule: 'core-layers-point-one-way',
  },
  {
    file: 'core/src/model/planted-persist.ts',
    text: "export type { Saver } from '../persist/saver.js';\n",
    rule: 'core-layers-point-one-way',
  },
  {
    file: 'core/src/storage/planted-lifecycle.ts',
    text: "export type { Lifecycle } from '../lifecycle/ports.js';\n",
    rule: 'core-storage-below-lifecycle',
  },
  {
    file: 'core/src/lifecycle/planted-api.ts',
    text: "export type { ApiServices } from '../api/services.js';\n",
    rule: 'core-lifecycle-below-api',
  },
  {
    file: 'core/src/api/planted-daemon.ts',
    text: "export type { DaemonOptions } from '../daemon/daemon.js';\n",
    rule: 'core-api-below-daemon',
  },
  // A cycle across two folders made only of type imports, which run-time cycle checks miss.
  {
    file: 'core/src/storage/planted-a.ts',
    text: "import type { B } from '../persist/planted-b.js';\nexport type A = B | 1;\n",
    rule: 'no-cycle-across-folders',
  },
  {
    file: 'core/src/persist/planted-b.ts',
    text: "import type { A } from '../storage/planted-a.js';\nexport type B = A | 2;\n",
    rule: 'no-cycle-across-folders',
  },
];

interface Violation {
  readonly from: string;
  readonly rule: { readonly name: string };
  /** For a cycle (reported once, from one of its members): the modules in it. */
  readonly cycle?: readonly { readonly name: string }[];
}

const involves = (v: Violation, file: string): boolean =>
  v.from === file || (v.cycle ?? []).some((c) => c.name === file);

/** Runs depcruise as `npm run lint:deps` does (its exit status), or with JSON output (what it found). */
async function depcruise(
  files: readonly string[],
  outputType: 'err' | 'json',
): Promise<{ code: number; stdout: string }> {
  const args = ['--config', '.dependency-cruiser.cjs', '--output-type', outputType, ...files];
  try {
    const { stdout } = await promisify(execFile)(DEPCRUISE, args, { cwd: ROOT, maxBuffer: 64 << 20 });
    return { code: 0, stdout };
  } catch (e) {
    return e as { code: number; stdout: string };
  }
}

describe('dependency rules (DESIGN.md), enforced by npm run lint:deps', () => {
  beforeAll(async () => {
    for (const p of PLANTED) {
      await mkdir(dirname(join(ROOT, p.file)), { recursive: true });
      await writeFile(join(ROOT, p.file), p.text);
    }
  });
  afterAll(async () => {
    for (const p of PLANTED) await rm(join(ROOT, p.file), { force: true });
  });

  it('fail on every planted violation, each under its own rule', async () => {
    const files = PLANTED.map((p) => p.file);
    expect((await depcruise(files, 'err')).code).not.toBe(0);
    const { stdout } = await depcruise(files, 'json');
    const { violations } = (JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary;
    for (const p of PLANTED) {
      const rules = violations.filter((v) => involves(v, p.file)).map((v) => v.rule.name);
      expect(rules, p.file).toContain(p.rule);
    }
  }, 120_000);
});
