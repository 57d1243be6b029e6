// Shared pieces of the benchmarks: a raw admin-socket call, percentiles, a
// spawned odysseyd, and progress that only shows on a TTY.
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export function call(socket, method, dest, arg = '', payload = '') {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const s = connect(socket);
    s.on('connect', () =>
      s.end(Buffer.concat([Buffer.from(`${method}+${arg} dom0 name ${dest}\0`), Buffer.from(payload)])),
    );
    s.on('data', (c) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const r = Buffer.concat(chunks);
      if (r[0] !== 0x30)
        reject(new Error(`${method}+${arg} ${dest}: ${r.toString('latin1').replaceAll('\0', ' ')}`));
      else resolve(r.subarray(2));
    });
  });
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * `args` go after the defaults (e.g. `--backend process`); `nodeArgs` before the script (e.g. `--cpu-prof`);
 * `main` is the daemon's entry point (another build's, for an A/B).
 */
export async function startOdysseyd(args = [], nodeArgs = [], main = join(ROOT, 'core/dist/daemon/main.js')) {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-bench-'));
  const socket = join(dir, 'qubesd.sock');
  const proc = spawn(
    process.execPath,
    [...nodeArgs, main, '--socket', socket, '--state-dir', dir, '--log-level', 'error', ...args],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  for (let i = 0; i < 200; i++) {
    try {
      await call(socket, 'admin.vm.List', 'dom0');
      return { proc, socket, dir };
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error('odysseyd did not start');
}

/** A one-line progress indicator on a TTY; silent in CI logs. */
export function progress(label) {
  const tty = process.stderr.isTTY;
  return {
    update(done, total) {
      if (tty) process.stderr.write(`\r${label}: ${done}/${total}`);
    },
    end() {
      if (tty) process.stderr.write('\n');
    },
  };
}
