// bench:soak — odysseyd under a long mixed load (issue 11 item 8): N clients on
// Admin API calls (List, property and feature Get/Set, GetAll, CurrentState),
// admin.Events subscribers that read everything, and start/stop cycles of
// process-backend domains. Every interval (a minute) prints odysseyd's RSS and
// open fds (medians of per-second samples), the calls/s and the latency
// percentiles of that interval; at the end, the ratio of the last intervals'
// RSS and fds to the first ones'. Not a CI test.
// Usage: node bench/soak.js [--minutes 30] [--clients 64] [--subscribers 8]
//        [--domains 4] [--interval-seconds 60]
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { call, percentile, progress, ROOT, startOdysseyd } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    clients: { type: 'string', default: '64' },
    subscribers: { type: 'string', default: '8' },
    domains: { type: 'string', default: '4' },
    'interval-seconds': { type: 'string', default: '60' },
  },
});
const MINUTES = Number(opts.minutes);
const CLIENTS = Number(opts.clients);
const SUBSCRIBERS = Number(opts.subscribers);
const DOMAINS = Number(opts.domains);
const INTERVAL_MS = Number(opts['interval-seconds']) * 1000;
const VMS = 50;

const rssMiB = (pid) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const d = await startOdysseyd(['--config', '/dev/null', '--backend', 'process']);
let stopping = false;
const subscribers = [];
try {
  const bar = progress('creating qubes');
  await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (let i = 0; i < VMS; i++) {
    await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=vm${i} label=red`);
    bar.update(i + 1, VMS + DOMAINS);
  }
  for (let i = 0; i < DOMAINS; i++) {
    await call(d.socket, 'admin.vm.Create.StandaloneVM', 'dom0', '', `name=pd${i} label=green`);
    bar.update(VMS + i + 1, VMS + DOMAINS);
  }
  bar.end();

  // Per interval: latencies of the mixed calls, errors, start/stop cycles, events read.
  let window = { latencies: [], errors: 0, cycles: 0, cycleErrors: 0, events: 0 };
  let lastError = '';

  // Subscribers read every event; one the daemon closes (it should not: they read) reconnects.
  const subscribe = () => {
    const s = connect(d.socket);
    s.on('connect', () => s.end(Buffer.from('admin.Events+ dom0 name dom0\0')));
    s.on('data', (chunk) => {
      // Each event is a record of NUL-separated fields ending in a double NUL.
      for (let i = 1; i < chunk.length; i++) if (chunk[i] === 0 && chunk[i - 1] === 0) window.events++;
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      const at = subscribers.indexOf(s);
      if (at >= 0) subscribers.splice(at, 1);
      if (!stopping) subscribe();
    });
    subscribers.push(s);
  };
  for (let i = 0; i < SUBSCRIBERS; i++) subscribe();

  const vm = () => `vm${Math.floor(Math.random() * VMS)}`;
  const mix = [
    () => call(d.socket, 'admin.vm.List', 'dom0'),
    () => call(d.socket, 'admin.vm.property.GetAll', vm()),
    () => call(d.socket, 'admin.vm.property.Get', vm(), 'netvm'),
    () =>
      call(d.socket, 'admin.vm.property.Set', vm(), 'memory', String(300 + Math.floor(Math.random() * 500))),
    () =>
      call(
        d.socket,
        'admin.vm.feature.Set',
        vm(),
        `f${Math.floor(Math.random() * 20)}`,
        String(Math.random()),
      ),
    () => call(d.socket, 'admin.vm.feature.List', vm()),
    () => call(d.socket, 'admin.vm.CurrentState', `pd${Math.floor(Math.random() * DOMAINS)}`),
  ];
  const client = async () => {
    while (!stopping) {
      const fn = mix[Math.floor(Math.random() * mix.length)];
      const t0 = process.hrtime.bigint();
      try {
        await fn();
        window.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      } catch (e) {
        window.errors++;
        lastError = String(e.message ?? e);
      }
    }
  };
  const cycler = async (name) => {
    while (!stopping) {
      try {
        await call(d.socket, 'admin.vm.Start', name);
        await call(d.socket, 'admin.vm.Shutdown', name, 'wait');
        window.cycles++;
      } catch (e) {
        window.cycleErrors++;
        lastError = String(e.message ?? e);
        await call(d.socket, 'admin.vm.Kill', name).catch(() => undefined);
        await sleep(1000);
      }
    }
  };

  const t0 = Date.now();
  const workers = [
    ...Array.from({ length: CLIENTS }, client),
    ...Array.from({ length: DOMAINS }, (_, i) => cycler(`pd${i}`)),
  ];
  const intervals = [];
  const fmt = (n, w = 8) => n.toFixed(1).padStart(w);
  console.log(
    `soak: ${MINUTES} min, ${CLIENTS} clients, ${SUBSCRIBERS} event subscribers, ${DOMAINS} process domains cycling, ${VMS} AppVMs`,
  );
  console.log(' min  RSS MiB   fds  calls/s   p50 ms   p95 ms   p99 ms  errors  cycles  events');
  // RSS and fds are sampled every second and reported as the interval's median: the fd count
  // includes the clients' connections in flight, which one snapshot catches at random.
  let samples = { rss: [], fds: [] };
  const sampler = setInterval(() => {
    samples.rss.push(rssMiB(d.proc.pid));
    samples.fds.push(fds(d.proc.pid));
  }, 1000);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  while (Date.now() - t0 < MINUTES * 60_000) {
    const start = Date.now();
    await sleep(Math.min(INTERVAL_MS, t0 + MINUTES * 60_000 - start));
    const w = window;
    window = { latencies: [], errors: 0, cycles: 0, cycleErrors: 0, events: 0 };
    const sampled = samples;
    samples = { rss: [], fds: [] };
    const seconds = (Date.now() - start) / 1000;
    w.latencies.sort((a, b) => a - b);
    const row = {
      minute: (Date.now() - t0) / 60_000,
      rssMiB: median(sampled.rss),
      fds: median(sampled.fds),
      callsPerSecond: w.latencies.length / seconds,
      p50ms: percentile(w.latencies, 50),
      p95ms: percentile(w.latencies, 95),
      p99ms: percentile(w.latencies, 99),
      errors: w.errors,
      cycles: w.cycles,
      cycleErrors: w.cycleErrors,
      events: w.events,
    };
    intervals.push(row);
    console.log(
      `${fmt(row.minute, 4)} ${fmt(row.rssMiB)} ${String(row.fds).padStart(5)} ${fmt(row.callsPerSecond)} ${fmt(row.p50ms)} ${fmt(row.p95ms)} ${fmt(row.p99ms)} ${String(row.errors + row.cycleErrors).padStart(7)} ${String(row.cycles).padStart(7)} ${String(row.events).padStart(7)}`,
    );
  }
  clearInterval(sampler);
  stopping = true;
  await Promise.all(workers);

  // The first and last third of the run (at least one interval each): a leak shows as a ratio well above 1.
  const k = Math.max(1, Math.floor(intervals.length / 3));
  const mean = (rows, key) => rows.reduce((s, r) => s + r[key], 0) / rows.length;
  const first = intervals.slice(0, k);
  const last = intervals.slice(-k);
  const rssRatio = mean(last, 'rssMiB') / mean(first, 'rssMiB');
  const fdRatio = mean(last, 'fds') / mean(first, 'fds');
  const flat = rssRatio < 1.15 && fdRatio < 1.15;
  console.log(
    `last ${k} vs first ${k} interval(s): RSS x${rssRatio.toFixed(3)}, fds x${fdRatio.toFixed(3)} -> ${flat ? 'flat' : 'NOT flat'} (flat: both below x1.15; medians of per-second samples)`,
  );
  if (lastError) console.log(`last error: ${lastError.slice(0, 200)}`);

  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  const out = join(ROOT, 'bench/results/soak.json');
  const result = {
    node: process.version,
    minutes: MINUTES,
    clients: CLIENTS,
    subscribers: SUBSCRIBERS,
    domains: DOMAINS,
    intervals,
    rssRatio,
    fdRatio,
    flat,
  };
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${out}`);
} finally {
  stopping = true;
  for (const s of subscribers.splice(0)) s.destroy();
  d.proc.kill('SIGTERM');
  await new Promise((r) => d.proc.on('exit', r));
  await rm(d.dir, { recursive: true, force: true });
}
