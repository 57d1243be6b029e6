// bench:api — admin socket throughput and latency with 1000 VMs, at 1, 8 and 64
// concurrent clients, for a mix of vm.List, vm.property.GetAll, vm.property.Set
// and vm.feature.Set; plus the wall time of `qvm ls`. Prints a table and
// writes bench/results/api.json.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { ROOT, call, percentile, progress, startOdysseyd } from './lib.js';

const VMS = Number(process.env.BENCH_VMS ?? 1000);
const CALLS = Number(process.env.BENCH_CALLS ?? 4000);
const LEVELS = [1, 8, 64];

const d = await startOdysseyd();
try {
  const p = progress('creating VMs');
  await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (let i = 0; i < VMS; i++) {
    await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=vm${i} label=red`);
    p.update(i + 1, VMS);
  }
  p.end();

  const vm = () => `vm${Math.floor(Math.random() * VMS)}`;
  const mix = [
    ['vm.List', () => call(d.socket, 'admin.vm.List', 'dom0')],
    ['vm.property.GetAll', () => call(d.socket, 'admin.vm.property.GetAll', vm())],
    [
      'vm.property.Set',
      () =>
        call(
          d.socket,
          'admin.vm.property.Set',
          vm(),
          'memory',
          String(300 + Math.floor(Math.random() * 500)),
        ),
    ],
    ['vm.feature.Set', () => call(d.socket, 'admin.vm.feature.Set', vm(), 'bench', String(Math.random()))],
  ];

  const results = [];
  for (const clients of LEVELS) {
    const latencies = Object.fromEntries(mix.map(([n]) => [n, []]));
    let issued = 0;
    const start = process.hrtime.bigint();
    const worker = async () => {
      while (issued < CALLS) {
        const [name, fn] = mix[issued++ % mix.length];
        const t0 = process.hrtime.bigint();
        await fn();
        latencies[name].push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    };
    await Promise.all(Array.from({ length: clients }, worker));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const all = Object.values(latencies)
      .flat()
      .sort((a, b) => a - b);
    const row = {
      clients,
      calls: CALLS,
      callsPerSecond: Math.round(CALLS / seconds),
      p50ms: percentile(all, 50),
      p99ms: percentile(all, 99),
      perMethod: {},
    };
    for (const [name, l] of Object.entries(latencies)) {
      l.sort((a, b) => a - b);
      row.perMethod[name] = { p50ms: percentile(l, 50), p99ms: percentile(l, 99) };
    }
    results.push(row);
  }

  let qvmLs = null;
  const qvm = join(ROOT, 'client/dist/cli/main.js');
  try {
    const t0 = process.hrtime.bigint();
    const { stdout } = await promisify(execFile)(process.execPath, [qvm, '--socket', d.socket, 'ls'], {
      maxBuffer: 64 << 20,
    });
    qvmLs = { seconds: Number(process.hrtime.bigint() - t0) / 1e9, lines: stdout.trim().split('\n').length };
  } catch (e) {
    qvmLs = { error: String(e.message ?? e).split('\n')[0] };
  }

  const fmt = (n) => n.toFixed(2).padStart(8);
  console.log(`admin API with ${VMS} VMs, ${CALLS} calls per level (mix: ${mix.map(([n]) => n).join(', ')})`);
  console.log('clients   calls/s    p50 ms    p99 ms');
  for (const r of results)
    console.log(
      `${String(r.clients).padStart(7)} ${String(r.callsPerSecond).padStart(9)} ${fmt(r.p50ms)}  ${fmt(r.p99ms)}`,
    );
  console.log(
    qvmLs.seconds !== undefined
      ? `qvm ls: ${qvmLs.seconds.toFixed(2)} s for ${qvmLs.lines} lines`
      : `qvm ls: ${qvmLs.error}`,
  );

  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  const out = join(ROOT, 'bench/results/api.json');
  await writeFile(out, JSON.stringify({ vms: VMS, node: process.version, results, qvmLs }, null, 2));
  console.log(`wrote ${out}`);
} finally {
  d.proc.kill('SIGTERM');
  await new Promise((r) => d.proc.on('exit', r));
  await rm(d.dir, { recursive: true, force: true });
}
