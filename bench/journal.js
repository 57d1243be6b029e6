// A/B of the durable write: `admin.vm.feature.Set` on two odysseyd in the same run, the build under
// test (core/dist) and a baseline build (BENCH_BASE, e.g. the previous commit's core/dist copied to
// core/dist/base), interleaved round by round so both see the same machine. Per round and daemon:
// BENCH_CALLS sequential calls, then as many from 8 concurrent closed-loop clients. With
// BENCH_STRACE=1 each daemon's fsync/fdatasync/rename/pwrite64 calls are counted (strace -c) over one
// extra round of each phase (pwrite64: journal records; an O_DSYNC journal syncs in it).
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { ROOT, call, percentile, startOdysseyd } from './lib.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const VMS = Number(process.env.BENCH_VMS ?? 10);
const BASE = process.env.BENCH_BASE;
if (!BASE) {
  console.error('BENCH_BASE=<path to the baseline build of core/dist/daemon/main.js> is required');
  process.exit(2);
}

async function populate(socket) {
  await call(socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (let i = 0; i < VMS; i++)
    await call(socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=vm${i} label=red`);
}

let n = 0;
const set = (socket) => call(socket, 'admin.vm.feature.Set', `vm${n++ % VMS}`, 'bench', String(n));

async function phase(socket, clients, calls) {
  const lat = [];
  let left = calls;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left-- > 0) {
        const s = process.hrtime.bigint();
        await set(socket);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  return { callsPerSec: calls / secs, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

async function cpuMs(pid) {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

async function straced(pid, run) {
  const out = join(ROOT, 'bench/results', `strace-${pid}.txt`);
  const st = spawn(
    'strace',
    ['-c', '-f', '-e', 'trace=fsync,fdatasync,rename,pwrite64', '-o', out, '-p', String(pid)],
    {
      stdio: 'ignore',
    },
  );
  await new Promise((r) => setTimeout(r, 500));
  await run();
  st.kill('SIGINT');
  await new Promise((r) => st.on('exit', r));
  const text = await readFile(out, 'utf8');
  // Rows are `% time, seconds, usecs/call, calls, [errors,] syscall`.
  const count = (name) =>
    Number(
      text
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f.at(-1) === name)?.[3] ?? 0,
    );
  return {
    fsync: count('fsync'),
    fdatasync: count('fdatasync'),
    rename: count('rename'),
    pwrite64: count('pwrite64'),
  };
}

await mkdir(join(ROOT, 'bench/results'), { recursive: true });
const args = ['--config', '/dev/null', '--backend', 'process'];
const daemons = [
  ['base', await startOdysseyd(args, [], resolve(BASE))],
  ['new', await startOdysseyd(args, [])],
];
const out = { calls: CALLS, vms: VMS, rounds: [], strace: {} };
try {
  for (const [, d] of daemons) await populate(d.socket);
  for (let r = 0; r < ROUNDS; r++) {
    const round = {};
    // Alternate which daemon goes first, so neither always gets the quieter half of a round.
    for (const [name, d] of r % 2 === 0 ? daemons : [...daemons].reverse()) {
      const cpu0 = await cpuMs(d.proc.pid);
      const seq = await phase(d.socket, 1, CALLS);
      const conc = await phase(d.socket, 8, CALLS);
      round[name] = { seq, conc, cpuMsPerCall: ((await cpuMs(d.proc.pid)) - cpu0) / (2 * CALLS) };
      const f = (x) => `${x.callsPerSec.toFixed(0)}/s p50 ${x.p50.toFixed(2)} p99 ${x.p99.toFixed(1)} ms`;
      console.log(
        `round ${r} ${name}: 1 client ${f(seq)} | 8 clients ${f(conc)} | CPU ${round[name].cpuMsPerCall.toFixed(2)} ms/call`,
      );
    }
    out.rounds.push(round);
  }
  if (process.env.BENCH_STRACE === '1') {
    for (const [name, d] of daemons) {
      out.strace[name] = {
        seq: await straced(d.proc.pid, () => phase(d.socket, 1, CALLS)),
        conc: await straced(d.proc.pid, () => phase(d.socket, 8, CALLS)),
      };
      console.log(`strace ${name}: ${JSON.stringify(out.strace[name])} for ${CALLS} calls per phase`);
    }
  }
} finally {
  for (const [, d] of daemons) {
    d.proc.kill('SIGTERM');
    await new Promise((r) => d.proc.on('exit', r));
    await rm(d.dir, { recursive: true, force: true });
  }
}
await writeFile(join(ROOT, 'bench/results/journal.json'), JSON.stringify(out, null, 2));
