import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { QubesError } from '../errors.js';
import { isTty } from './progress.js';

/** What templates/build-template.sh made (or found in its cache) for one template. */
export interface BuiltTemplate {
  /** The key of the build's inputs: the same key is the same image. */
  readonly key: string;
  /** Raw ext4 image of the root volume. */
  readonly root: string;
  readonly vmlinuz: string;
  readonly initramfs: string;
  readonly kernelVersion: string;
  /** The qrexec services in the template's /etc/qubes-rpc, which it announces (supported-rpc.*). */
  readonly rpcServices: readonly string[];
}

/** Templates the builder knows how to make. */
export const BUILDABLE_TEMPLATES: readonly string[] = ['debian-12'];

/**
 * The builder script: beside the client's dist in a checkout (`<repo>/templates`) and in the Debian
 * package (`/usr/lib/odyssey/templates`), which keep the same layout; `ODYSSEY_TEMPLATE_BUILDER` names
 * another.
 */
export function builderPath(env: Readonly<Record<string, string | undefined>>): string {
  return (
    env['ODYSSEY_TEMPLATE_BUILDER'] ||
    fileURLToPath(new URL('../../../templates/build-template.sh', import.meta.url))
  );
}

export interface BuildOptions {
  readonly builder: string;
  readonly name: string;
  readonly cacheDir?: string | undefined;
  readonly force?: boolean | undefined;
  /** Where the builder's messages go; on a terminal it draws its progress there itself. */
  readonly stderr: { write(text: string): unknown };
}

function parseOutput(stdout: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return values;
}

/**
 * Runs the builder as a child process (it needs root for mmdebstrap and mkfs.ext4): a build, or the
 * cached one with the same inputs.
 */
export async function buildTemplate(options: BuildOptions): Promise<BuiltTemplate> {
  if (!existsSync(options.builder)) {
    throw new QubesError(`template builder ${options.builder} not found`, 'QubesException');
  }
  const args = [options.builder, options.name];
  if (options.cacheDir !== undefined) args.push('--cache-dir', options.cacheDir);
  if (options.force) args.push('--force');
  // A terminal is handed over as it is, so mmdebstrap and apt draw their progress on it.
  const tty = isTty(options.stderr) && options.stderr === process.stderr;
  const child = spawn('bash', args, { stdio: ['ignore', 'pipe', tty ? 'inherit' : 'pipe'] });
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => options.stderr.write(chunk));
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (status, signal) => resolve(status ?? (signal ? 128 : 1)));
  });
  if (code !== 0) {
    throw new QubesError(`building template ${options.name} failed (exit status ${code})`, 'QubesException');
  }
  const out = parseOutput(stdout);
  const get = (key: string): string => {
    const value = out.get(key);
    if (!value) throw new QubesError(`template builder printed no ${key}=`, 'QubesException');
    return value;
  };
  return {
    key: get('key'),
    root: get('root'),
    vmlinuz: get('vmlinuz'),
    initramfs: get('initramfs'),
    kernelVersion: get('kernel_version'),
    rpcServices: get('rpc_services')
      .split(',')
      .map((service) => {
        // Each becomes a feature's name: only the characters a qrexec service name has.
        if (!/^[A-Za-z0-9._-]+$/.test(service)) {
          throw new QubesError(
            `template builder printed a bad service name: ${JSON.stringify(service)}`,
            'QubesException',
          );
        }
        return service;
      }),
  };
}
