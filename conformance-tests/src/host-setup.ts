import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { BackendLoadError, backendPackageDir } from '@odyssey/hal';

import { keyValues } from './repo-scripts.js';
import { cleanEnv, run } from './spawn.js';

/**
 * What a backend's host needs before the backend is loaded, as its package declares it in
 * package.json under `odyssey.conformance` (hal/README.md): the suite reads it for any backend,
 * in-tree or a third party's, never keys it on the `--backend` string.
 */
export interface HostSetup {
  /** Options of the private libvirtd's start script (`--libvirtd private`). */
  readonly libvirtdEnv: NodeJS.ProcessEnv;
  /** The environment odysseyd and the suite's own instance of the backend get. */
  daemonEnv(): Promise<NodeJS.ProcessEnv>;
  /** Whether `--nested` (the suite inside a nested Xen dom0) applies to this backend. */
  readonly nestedXen: boolean;
}

const NONE: HostSetup = { libvirtdEnv: {}, daemonEnv: async () => ({}), nestedXen: false };

type Strings = Record<string, string>;

function strings(value: unknown, where: string): Strings {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Object.values(value).some((v) => typeof v !== 'string'))
    throw new Error(`${where} must be an object of strings`);
  return value as Strings;
}

/** The declared set-up of the package `--backend` names; none for a lone module file. */
export async function hostSetupOf(backend: string): Promise<HostSetup> {
  // A backend that cannot be found is the loader's to report, with its own message.
  const dir = await backendPackageDir(backend).catch((e: unknown) => {
    if (e instanceof BackendLoadError) return undefined;
    throw e;
  });
  if (dir === undefined) return NONE;
  const where = `${join(dir, 'package.json')}: odyssey.conformance`;
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
    odyssey?: { conformance?: Record<string, unknown> };
  };
  const declared = pkg.odyssey?.conformance;
  if (declared === undefined) return NONE;
  const env = strings(declared['env'], `${where}.env`);
  const setup = declared['setup'] as { script?: unknown; env?: unknown } | undefined;
  if (setup !== undefined && typeof setup.script !== 'string')
    throw new Error(`${where}.setup.script must name a script in the package`);
  const fromScript = strings(setup?.env, `${where}.setup.env`);
  return {
    libvirtdEnv: strings(declared['libvirtdEnv'], `${where}.libvirtdEnv`),
    nestedXen: declared['nested'] === 'xen',
    daemonEnv: async () => {
      if (setup?.script === undefined) return env;
      const script = join(dir, String(setup.script));
      const done = await run(script, [], cleanEnv());
      if (done.code !== 0) throw new Error(`${script} failed: ${done.stderr}`);
      // The script's `key=value` lines, each under the variable the package maps it to.
      const printed = keyValues(done.stdout);
      const mapped: Strings = {};
      for (const [variable, key] of Object.entries(fromScript)) {
        const value = printed[key];
        if (value === undefined) throw new Error(`${script} printed no ${key}=`);
        mapped[variable] = value;
      }
      return { ...env, ...mapped };
    },
  };
}
