// bench:qubesdb-refresh — what keeping the running qubes' QubesDB in step costs an Admin API write.
// One odysseyd on the process backend (real agent processes as domains) with a netvm `sys-net` (the
// default netvm), a halted AppVM `idle` (its client) and AppVMs vm0..; the running set grows level by
// level (BENCH_LEVELS): first vm0 (no netvm), then sys-net, then vm1, vm2, ... (its clients). At each
// level, sequential calls (one client) and odysseyd's CPU from /proc/<pid>/stat per call of:
//   property.Get on vm0, the reference of the same minutes;
//   feature.Set and property.Set (qrexec_timeout) on idle (halted) and on vm0 (running, no netvm);
//   feature.Set on vm1, a client of sys-net (running from the second level on).
// Rounds interleave the calls, so the neighbours' load hits all alike; each figure is the median of
// the rounds, after one round not counted (V8 warming up). Prints ms of CPU per call and its ratio to
// property.Get at the same level; writes bench/results/qubesdb-refresh.json. Nothing asserts a time.
//
//   BENCH_LEVELS  running qubes per level (default 1,20,100)
//   BENCH_CALLS   calls per operation and round (default 1000)
//   BENCH_ROUNDS  counted rounds per level (default 5)
//   BENCH_MAIN    odysseyd's entry point (another build's, for an A/B, e.g. core/dist-base/daemon/main.js)
//   BENCH_NODE_ARGS extra node options for odysseyd, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { ROOT, call, percentile, progress, startOdysseyd } from './lib.js';

const LEVELS = (process.env.BENCH_LEVELS ?? '1,20,100').split(',').map(Number);
const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const CLOCK_TICKS = 100;

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

const d = await startOdysseyd(
  ['--config', '/dev/null', '--backend', 'process'],
  NODE_ARGS,
  process.env.BENCH_MAIN ?? undefined,
);
const pid = d.proc.pid;
const results = { levels: [], calls: CALLS, rounds: ROUNDS, node: process.version };
let order = [];
let n = 0;
try {
  const total = Math.max(...LEVELS);
  const bar = progress('creating qubes');
  await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=sys-net label=red');
  await call(d.socket, 'admin.vm.property.Set', 'sys-net', 'provides_network', 'True');
  await call(d.socket, 'admin.vm.property.Set', 'sys-net', 'netvm', '');
  await call(d.socket, 'admin.property.Set', 'dom0', 'default_netvm', 'sys-net');
  await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=idle label=red');
  for (let i = 0; i < total - 1; i++) {
    await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=vm${i} label=red`);
    bar.update(i + 1, total - 1);
  }
  bar.end();
  await call(d.socket, 'admin.vm.property.Set', 'vm0', 'netvm', '');
  order = ['vm0', 'sys-net', ...Array.from({ length: total - 2 }, (_, i) => `vm${i + 1}`)];

  const ops = [
    ['property.Get', () => call(d.socket, 'admin.vm.property.Get', 'vm0', 'qrexec_timeout')],
    ['feature.Set halted', (i) => call(d.socket, 'admin.vm.feature.Set', 'idle', 'bench', String(i))],
    ['feature.Set running', (i) => call(d.socket, 'admin.vm.feature.Set', 'vm0', 'bench', String(i))],
    [
      'property.Set halted',
      (i) => call(d.socket, 'admin.vm.property.Set', 'idle', 'qrexec_timeout', String(60 + (i % 50))),
    ],
    ['feature.Set client', (i) => call(d.socket, 'admin.vm.feature.Set', 'vm1', 'bench', String(i))],
    [
      'property.Set running',
      (i) => call(d.socket, 'admin.vm.property.Set', 'vm0', 'qrexec_timeout', String(60 + (i % 50))),
    ],
  ];
  for (const level of LEVELS) {
    const starting = progress(`starting qubes (${level})`);
    while (n < level) {
      await call(d.socket, 'admin.vm.Start', order[n]);
      n++;
      starting.update(n, level);
    }
    starting.end();
    const samples = Object.fromEntries(ops.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS + 1; round++) {
      for (const [name, fn] of ops) {
        const cpu0 = cpuMs(pid);
        for (let i = 0; i < CALLS; i++) await fn(round * CALLS + i);
        // The first round warms V8 up and is not counted.
        if (round > 0) samples[name].push((cpuMs(pid) - cpu0) / CALLS);
      }
    }
    const median = Object.fromEntries(
      Object.entries(samples).map(([name, s]) => [
        name,
        percentile(
          [...s].sort((a, b) => a - b),
          50,
        ),
      ]),
    );
    results.levels.push({ running: n, cpuMsPerCall: median, samples });
  }
} finally {
  // Domains outlive the daemon (as VMs do qubesd): each is killed before it goes.
  for (const name of order.slice(0, n).reverse())
    await call(d.socket, 'admin.vm.Kill', name).catch(() => undefined);
  d.proc.kill('SIGTERM');
  await new Promise((r) => d.proc.once('exit', r));
  await rm(d.dir, { recursive: true, force: true });
}

const names = Object.keys(results.levels[0].cpuMsPerCall);
console.log(
  `odysseyd CPU per call, ms (median of ${ROUNDS} rounds of ${CALLS}; × = ratio to property.Get at that level)`,
);
console.log(['running', ...names].map((s) => s.padStart(22)).join(''));
for (const { running, cpuMsPerCall } of results.levels) {
  const get = cpuMsPerCall['property.Get'];
  const cell = (k) => `${cpuMsPerCall[k].toFixed(3)} (${(cpuMsPerCall[k] / get).toFixed(1)}×)`;
  console.log([String(running), ...names.map(cell)].map((s) => s.padStart(22)).join(''));
}
await mkdir(join(ROOT, 'bench/results'), { recursive: true });
await writeFile(join(ROOT, 'bench/results/qubesdb-refresh.json'), `${JSON.stringify(results, null, 2)}\n`);
