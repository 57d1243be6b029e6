import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULT_TEMPLATE_CACHE } from './debian-template.js';
import { SCRIPTS } from './programs.js';
import { keyValues, script } from './repo-scripts.js';
import type { BackendReport, Report } from './report.js';
import { cleanEnv } from './spawn.js';
import { XEN_GUEST_IMAGE_ENV } from './xen-setup.js';

export interface NestedOptions {
  readonly backend: string;
  readonly only?: string;
  /** The runner's --virt-mode inside dom0. */
  readonly virtMode: string;
  /** Where dom0's console log (console.log) and its /var/log (dom0-logs/) are kept. */
  readonly logDir: string;
  /** Aborting stops the nested run (its script then kills QEMU). */
  readonly signal: AbortSignal;
}

/** This runner as dom0 sees it: the repository is shared at the same path. */
const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

/** bench/vchan-xen.js: libxenvchan dom0 → guest against the socket transport, in the same dom0. */
const VCHAN_BENCH = fileURLToPath(new URL('../../bench/vchan-xen.js', import.meta.url));
const BENCH_RESULT = 'vchan-bench.json';

/** The benchmark's numbers as metrics; none when it failed (its error is in dom0's console log). */
async function benchMetrics(file: string): Promise<Record<string, number>> {
  try {
    const result = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    return Object.fromEntries(
      Object.entries(result).filter(
        (e): e is [string, number] => typeof e[1] === 'number' && e[0] !== 'bytes',
      ),
    );
  } catch {
    return {};
  }
}

/**
 * How long QEMU may run: the whole suite took 2180 s alone on 4 December 2026; beside CI's other
 * stages on the same two cores 3073, 3196 and 3493 s (5–6 December), and once past 3600 s on a machine
 * loaded further. CI's limit is 90 minutes and this run starts within its first five (setup and the
 * template), so 75 minutes lets a slow machine finish and still ends inside that limit.
 */
const NESTED_TIMEOUT_S = 4500;

/** QEMU's memory and dom0's share of it: dom0 holds the state dir in RAM, the rest is for domUs. */
const NESTED_MEMORY_MIB = 8192;
const DOM0_MEMORY_MIB = 5120;

/**
 * xen-nested.sh's arguments that show dom0 the template builder's cache (read-only) and point the
 * builder there, so the guest and network categories install the Debian template from the host's
 * build (dom0 has no mmdebstrap): whenever the run includes one of them — the whole suite (no
 * --only/--skip, as CI runs it), or a selection naming one. None when there is no cache; the
 * categories then say so.
 */
const TEMPLATE_CATEGORIES = ['guest', 'network'];

export async function templateCacheShare(only: string | undefined): Promise<string[]> {
  if (only !== undefined && !only.split(',').some((category) => TEMPLATE_CATEGORIES.includes(category)))
    return [];
  const cache = process.env['ODYSSEY_TEMPLATE_CACHE'] || DEFAULT_TEMPLATE_CACHE;
  try {
    await access(cache);
  } catch {
    return [];
  }
  return ['--share', cache, '--env', `ODYSSEY_TEMPLATE_CACHE=${cache}`];
}

/** scripts/xen-nested.sh's timings (seconds since QEMU started) kept as metrics of the run. */
const TIMINGS = ['dom0_shell_s', 'libvirtd_ready_s', 'command_done_s', 'total_s'] as const;

/** Runs the script with stderr on ours (its live progress) and returns its `key=value` stdout. */
function runNestedScript(args: string[], signal: AbortSignal): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(SCRIPTS, 'xen-nested.sh'), args, {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'inherit'],
      signal,
      killSignal: 'SIGTERM',
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(keyValues(stdout)));
  });
}

/**
 * The suite inside a nested Xen dom0 (scripts/xen-nested.sh: Xen under QEMU/TCG, libvirtd at
 * xen:///system): the host builds the Xen guest image, dom0 runs this runner with the same
 * backend and checks and writes its report into a read-write share, and the host takes the
 * backend's results from there.
 */
export async function runNested(options: NestedOptions): Promise<BackendReport> {
  const image = await script('build-guest-image.sh', [
    '--flavour',
    'xen',
    '--cache-dir',
    process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest',
  ]);
  if (!image['kernel']) throw new Error('build-guest-image.sh did not name its kernel');
  const imageDir = dirname(image['kernel']);
  const templates = await templateCacheShare(options.only);
  const out = await mkdtemp(join(tmpdir(), 'odyssey-conformance-nested-'));
  const consoleLog = join(options.logDir, 'console.log');
  await rm(options.logDir, { recursive: true, force: true });
  await mkdir(options.logDir, { recursive: true });
  try {
    const result = await runNestedScript(
      [
        '--share',
        imageDir,
        '--share-rw',
        out,
        '--dom0-logs',
        join(options.logDir, 'dom0-logs'),
        '--log',
        consoleLog,
        '--timeout',
        String(NESTED_TIMEOUT_S),
        '--env',
        `${XEN_GUEST_IMAGE_ENV}=${imageDir}`,
        ...templates,
        // The guest and network categories' qubes live in dom0's tmpfs /tmp, 75% of dom0's memory:
        // the template's root and each running qube's copy of it (~0.5 GiB each; the network chain
        // runs four at once), their private volumes. The domUs get the other 3 GiB (four of 400 MiB).
        // Other runs keep xen-nested.sh's defaults.
        ...(templates.length > 0
          ? ['--memory', String(NESTED_MEMORY_MIB), '--dom0-memory', String(DOM0_MEMORY_MIB)]
          : []),
        '--',
        'sh',
        '-c',
        // The transport benchmark runs in the same boot after the suite; the suite's status is the job's.
        `"$@"; status=$?; node ${VCHAN_BENCH} --image ${imageDir} --out ${join(out, BENCH_RESULT)} >&2 || ` +
          `echo "odyssey: the vchan benchmark failed" >&2; exit $status`,
        'nested-job',
        'node',
        CLI,
        '--backend',
        options.backend,
        '--report',
        out,
        '--virt-mode',
        options.virtMode,
        // dom0's /var/log comes back with the console log.
        '--daemon-log',
        '/var/log/odysseyd.log',
        ...(options.only ? ['--only', options.only] : []),
      ],
      options.signal,
    );
    let report: Report;
    try {
      report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    } catch {
      throw new Error(
        `the nested run wrote no report (exit ${result['exit'] ?? 'unknown'}); dom0's console: ${consoleLog}`,
      );
    }
    // The inner run's only column, named by the backend's declaration.
    const [backend] = report.backends;
    if (!backend) throw new Error(`the nested run's report has no ${options.backend} results`);
    Object.assign(backend.metrics, await benchMetrics(join(out, BENCH_RESULT)));
    for (const key of TIMINGS) {
      const seconds = Number(result[key]);
      if (result[key] !== undefined && Number.isFinite(seconds)) backend.metrics[`nested_${key}`] = seconds;
    }
    return backend;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
