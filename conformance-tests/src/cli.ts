#!/usr/bin/env node
import { Command, Option } from 'commander';

import { CATEGORIES, runChecks, type Category, type CheckResult } from './check.js';
import { selectChecks } from './checks/index.js';
import { guestsFor } from './guests.js';
import { installGuestKernel, startPrivateLibvirtd } from './kvm-setup.js';
import { startDaemon } from './odysseyd.js';
import { writeReport } from './report.js';

const program = new Command('odyssey-conformance')
  .description('runs the Odyssey conformance suite against odysseyd on one backend')
  .requiredOption('--backend <name>', 'backend package name (kvm, process, ...) or module path')
  .option('--report <dir>', 'where report.json and report.md go (merged with a report already there)', '.')
  .option('--only <categories>', `comma-separated subset of ${CATEGORIES.join(',')}`)
  .addOption(
    new Option('--libvirtd <which>', 'libvirtd for libvirt backends: the system one, or a private one')
      .choices(['system', 'private'])
      .default('system'),
  )
  .parse();

const opts = program.opts<{ backend: string; report: string; only?: string; libvirtd: string }>();
const only = opts.only?.split(',').map((c) => c.trim()) as Category[] | undefined;
const unknown = only?.filter((c) => !(CATEGORIES as readonly string[]).includes(c)) ?? [];
if (unknown.length > 0) program.error(`unknown categories: ${unknown.join(', ')}`);

// Progress is for people watching; CI logs get the summary line only.
const progress = process.stdout.isTTY && !process.env['CI'];
const results: CheckResult[] = [];
const metrics: Record<string, number> = {};
// What to undo, newest first; an interrupted run must not leave guests, odysseyd or libvirtd behind.
const cleanups: (() => Promise<void>)[] = [];
const cleanUp = async () => {
  for (const step of cleanups.splice(0).reverse())
    await step().catch((e: unknown) => console.error(String(e)));
};
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void cleanUp().finally(() => process.exit(130)));

try {
  const libvirtd = opts.libvirtd === 'private' ? await startPrivateLibvirtd() : undefined;
  if (libvirtd) cleanups.push(libvirtd.stop);
  const daemon = await startDaemon({
    backend: opts.backend,
    ...(libvirtd ? { env: libvirtd.env } : {}),
    ...(opts.backend === 'kvm' ? { prepare: installGuestKernel } : {}),
  });
  cleanups.push(daemon.stop);
  const ctx = {
    backend: opts.backend,
    socket: daemon.socket,
    client: daemon.client,
    guests: guestsFor(opts.backend, daemon.stateDir, daemon.client),
    metrics,
  };
  results.push(
    ...(await runChecks(selectChecks(only), ctx, (r) => {
      if (progress)
        process.stdout.write(`${r.status.padEnd(11)} ${r.id}${r.status === 'pass' ? '' : `: ${r.reason}`}\n`);
    })),
  );
} finally {
  await cleanUp();
}

await writeReport(opts.report, { backend: opts.backend, checks: results, metrics });
const count = (status: CheckResult['status']) => results.filter((r) => r.status === status).length;
console.log(`${count('pass')} passed, ${count('fail')} failed, ${count('unsupported')} unsupported`);
process.exitCode = count('fail') > 0 ? 1 : 0;
