import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { QVM } from './programs.js';
import { keyValues } from './repo-scripts.js';
import { cleanEnv, run } from './spawn.js';

/** The repository's template builder (`qvm template install` runs the same script). */
export const TEMPLATE_BUILDER = fileURLToPath(new URL('../../templates/build-template.sh', import.meta.url));

/** The builder's cache when ODYSSEY_TEMPLATE_CACHE is unset (build-template.sh's default). */
export const DEFAULT_TEMPLATE_CACHE = '/var/cache/odyssey/templates';

const DEBIAN_MIRROR = process.env['ODYSSEY_DEBIAN_MIRROR'] || 'http://deb.debian.org/debian';

function onPath(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why a Debian template cannot be built here, or undefined when it can: the builder needs root,
 * mmdebstrap, mkfs.ext4 and the Debian archive (a build cached under the same inputs needs no
 * archive, but only the builder knows its inputs' key, so an unreachable archive skips).
 */
export async function templateBuildProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'building a template needs root (mmdebstrap --mode=root)';
  for (const program of ['mmdebstrap', 'mkfs.ext4']) {
    if (!onPath(program)) return `${program} is not installed`;
  }
  try {
    const release = await fetch(`${DEBIAN_MIRROR}/dists/bookworm/Release`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(15_000),
    });
    if (!release.ok) return `the Debian archive ${DEBIAN_MIRROR} answers ${release.status}`;
  } catch (err) {
    return `the Debian archive ${DEBIAN_MIRROR} is unreachable: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}

export interface TemplateBuild {
  /** Wall time of the builder run, seconds. */
  readonly seconds: number;
  /** What the builder printed: key, root, vmlinuz, initramfs, kernel_version. */
  readonly out: Record<string, string>;
}

/** One builder run (a build, or the cached one of the same inputs). */
export async function buildDebianTemplate(): Promise<TemplateBuild> {
  const start = performance.now();
  const done = await run('bash', [TEMPLATE_BUILDER, 'debian-12'], cleanEnv());
  if (done.code !== 0) throw new Error(`build-template.sh debian-12 failed: ${done.stderr}`);
  return { seconds: (performance.now() - start) / 1000, out: keyValues(done.stdout) };
}

/**
 * Why there is no build of debian-12's current inputs in the builder's cache, or undefined when there
 * is one (`build-template.sh --cached-only` builds nothing).
 */
export async function cachedTemplateBuild(): Promise<string | undefined> {
  const done = await run('bash', [TEMPLATE_BUILDER, '--cached-only', 'debian-12'], cleanEnv());
  return done.code === 0 ? undefined : done.stderr.trim() || `build-template.sh exited ${done.code}`;
}

/** `qvm template install debian-12` against the daemon on `socket`, as a user would run it. */
export async function installDebianTemplate(socket: string): Promise<number> {
  const start = performance.now();
  const done = await run(process.execPath, [QVM, '--socket', socket, 'template', 'install', 'debian-12'], {
    ...cleanEnv(),
  });
  if (done.code !== 0) throw new Error(`qvm template install debian-12 failed: ${done.stderr}`);
  return (performance.now() - start) / 1000;
}
