#!/usr/bin/env node
import { join } from 'node:path';

import { Command, Option } from 'commander';
import type { GuestImageKind } from '@odyssey/hal';

import { BackendOpenError, openBackendUnderTest, type BackendUnderTest } from './backend-under-test.js';
import { chooseCategories } from './categories.js';
import { CATEGORIES, runChecks, type CheckResult } from './check.js';
import { cleanUpHal } from './checks/hal.js';
import { selectChecks } from './checks/index.js';
import { guestsFor } from './guests.js';
import { halGuestFor } from './hal-guests.js';
import { hostSetupOf } from './host-setup.js';
import { installGuestKernel, startPrivateLibvirtd } from './kvm-setup.js';
import { runNested } from './nested.js';
import { startDaemon } from './odysseyd.js';
import { declaredOf, writeReport, type BackendReport } from './report.js';
import { installXenGuestKernel } from './xen-setup.js';

/** Exit codes (README): no check failed; a check failed; bad usage; the suite could not run. */
const EXIT = { passed: 0, failed: 1, usage: 2, notRun: 3 } as const;

const program = new Command('odyssey-conformance')
  .description('runs the Odyssey conformance suite against odysseyd on one backend')
  .requiredOption(
    '--backend <name>',
    'backend: kvm (= @odyssey/backend-kvm), a package name, a package directory or a module file',
  )
  .option('--report <dir>', 'where report.json and report.md go (merged with a report already there)', '.')
  .option('--only <categories...>', `categories to run, comma-separated or repeated: ${CATEGORIES.join(',')}`)
  .option('--skip <categories...>', 'categories not to run')
  .option('--junit <file>', 'also write the report (every backend in it) as JUnit XML to FILE')
  .addOption(
    new Option('--libvirtd <which>', 'libvirtd for libvirt backends: the system one, or a private one')
      .choices(['system', 'private'])
      .default('system'),
  )
  .addOption(
    new Option(
      '--virt-mode <mode>',
      "virt_mode of the suite's template qube, so of all its qubes (default: the daemon's; pv with --nested)",
    ).choices(['pv', 'pvh', 'hvm']),
  )
  .option('--daemon-log <file>', "append odysseyd's stderr to FILE")
  .option(
    '--nested',
    'run the suite inside a nested Xen dom0 (Xen under QEMU/TCG, scripts/xen-nested.sh); a backend that declares it (xen)',
  )
  .exitOverride((err) => process.exit(err.exitCode === 0 ? EXIT.passed : EXIT.usage))
  .parse();

const opts = program.opts<{
  backend: string;
  report: string;
  only?: string[];
  skip?: string[];
  junit?: string;
  libvirtd: string;
  virtMode?: string;
  daemonLog?: string;
  nested?: boolean;
}>();
let only: ReturnType<typeof chooseCategories>;
try {
  only = chooseCategories(opts.only, opts.skip);
} catch (err) {
  program.error((err as Error).message);
}
// What the backend's host needs, as its package declares it (hal/README.md), whatever it is called.
const hostSetup = await hostSetupOf(opts.backend).catch((e: unknown) =>
  program.error(`backend ${opts.backend}: ${e instanceof Error ? e.message : String(e)}`),
);
if (opts.nested && !hostSetup.nestedXen)
  program.error(
    `--nested boots a Xen dom0, so it runs only a backend whose package declares odyssey.conformance.nested "xen" (not ${opts.backend})`,
  );
if (opts.nested && opts.libvirtd === 'private')
  program.error("--nested uses dom0's own libvirtd; --libvirtd private does not apply");

/** Guest kernels for the image kinds a backend declares, installed before odysseyd starts. */
const PREPARE: Partial<Record<GuestImageKind, (stateDir: string) => Promise<void>>> = {
  'odyssey-linux-kvm': installGuestKernel,
  'odyssey-linux-xen': installXenGuestKernel,
};

// Progress is for people watching; CI logs get what failed or warned, then the summary line, so a
// red run names its checks even where the report's files are not kept.
const progress = process.stdout.isTTY && !process.env['CI'];
// What to undo, newest first; an interrupted run must not leave guests, odysseyd or libvirtd behind.
const cleanups: (() => Promise<void>)[] = [];
const cleanUp = async () => {
  for (const step of cleanups.splice(0).reverse())
    await step().catch((e: unknown) => console.error(String(e)));
};
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void cleanUp().finally(() => process.exit(130)));

const line = (r: CheckResult) =>
  `${r.status.padEnd(11)} ${r.id} (${(r.durationMs / 1000).toFixed(1)} s)${r.status === 'pass' ? '' : `: ${r.reason}`}\n`;
const show = (r: CheckResult) => {
  if (progress) process.stdout.write(line(r));
};

/**
 * The backend as the suite holds it; one that cannot be loaded or opened ends the run here, with
 * the loader's message and exit code 3 (could not run), before anything is reported.
 */
async function openUnderTest(env: NodeJS.ProcessEnv): Promise<BackendUnderTest> {
  // The in-process backend reads its settings (a private libvirtd's socket) as odysseyd does.
  Object.assign(process.env, env);
  try {
    return await openBackendUnderTest(opts.backend, (level, message) => {
      if (level === 'error' || progress) console.error(`backend ${level}: ${message}`);
    });
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    console.error(`odyssey-conformance: the suite could not run: ${reason}`);
    await cleanUp();
    // A backend that said what it is goes into the matrix as not run, with the reason.
    if (e instanceof BackendOpenError && e.capabilities) {
      const caps = e.capabilities;
      await writeReport(
        opts.report,
        {
          backend: caps.name,
          declared: declaredOf(opts.backend, caps),
          checks: [],
          metrics: {},
          notRun: reason,
        },
        opts.junit,
      );
      console.log(`not run (${caps.name}): ${reason}`);
    }
    process.exit(EXIT.notRun);
  }
}

/** The suite here: hal checks on the suite's own instance, then the daemon's checks over its socket. */
async function runHere(): Promise<BackendReport> {
  const libvirtd =
    opts.libvirtd === 'private' ? await startPrivateLibvirtd(hostSetup.libvirtdEnv) : undefined;
  if (libvirtd) cleanups.push(libvirtd.stop);
  // The suite's own instance gets the environment odysseyd gets (lxc: the domains' root tree).
  const backendEnv = await hostSetup.daemonEnv();
  const underTest = await openUnderTest({ ...backendEnv, ...libvirtd?.env });
  cleanups.push(() => underTest.close());
  const caps = underTest.capabilities;
  const selection = selectChecks(only);
  const metrics: Record<string, number> = {};
  const checks: CheckResult[] = [];
  if (selection.hal.length > 0) {
    cleanups.push(() => cleanUpHal(underTest.current.vmm));
    const halContext = {
      backend: underTest,
      guest: halGuestFor(caps, underTest.runtimeDir, () => underTest.current.vchan, opts.virtMode),
      metrics,
    };
    checks.push(...(await runChecks(selection.hal, halContext, caps, show)));
    await cleanUpHal(underTest.current.vmm);
  }
  if (selection.daemon.length > 0) {
    const prepare = caps.guestImages.map((kind) => PREPARE[kind]).find((p) => p !== undefined);
    const daemon = await startDaemon({
      backend: opts.backend,
      env: { ...backendEnv, ...libvirtd?.env },
      ...(prepare ? { prepare } : {}),
      ...(opts.daemonLog ? { logFile: opts.daemonLog } : {}),
    });
    cleanups.push(daemon.stop);
    const ctx = {
      backend: underTest,
      socket: daemon.socket,
      client: daemon.client,
      guests: guestsFor(caps, underTest.current.vchan !== undefined, daemon.stateDir, daemon.client),
      metrics,
      ...(opts.virtMode ? { virtMode: opts.virtMode } : {}),
    };
    checks.push(...(await runChecks(selection.daemon, ctx, caps, show)));
  }
  return { backend: caps.name, declared: declaredOf(opts.backend, caps), checks, metrics };
}

/** Xen under QEMU/TCG has no hardware virtualisation to offer: PV is all it starts. */
const NESTED_VIRT_MODE = 'pv';

/** The suite inside a nested dom0 (it prints its own progress there, and loads the backend there). */
async function runInNestedDom0(): Promise<BackendReport> {
  const abort = new AbortController();
  cleanups.push(async () => abort.abort());
  return runNested({
    backend: opts.backend,
    ...(only ? { only: only.join(',') } : {}),
    virtMode: opts.virtMode ?? NESTED_VIRT_MODE,
    logDir: join(opts.report, 'xen-nested'),
    signal: abort.signal,
  });
}

let outcome: BackendReport | undefined;
try {
  outcome = await (opts.nested ? runInNestedDom0() : runHere());
} catch (err) {
  console.error(
    `odyssey-conformance: the suite could not run: ${err instanceof Error ? err.message : String(err)}`,
  );
} finally {
  await cleanUp();
}
if (!outcome) process.exit(EXIT.notRun);

const results = outcome.checks;
await writeReport(opts.report, outcome, opts.junit);
if (!progress)
  for (const r of results) if (r.status === 'fail' || r.status === 'warn') process.stdout.write(line(r));
const count = (status: CheckResult['status']) => results.filter((r) => r.status === status).length;
const warned = count('warn') > 0 ? `, ${count('warn')} warnings` : '';
console.log(
  `${count('pass')} passed, ${count('fail')} failed, ${count('unsupported')} unsupported${warned} (${outcome.backend})`,
);
process.exitCode = count('fail') > 0 ? EXIT.failed : EXIT.passed;
