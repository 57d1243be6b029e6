// odysseyd's memory while admin.Events subscribers never read (issue 11 item 2):
// N subscribers connect and stop reading, then many feature changes fire events.
// Prints RSS and open fds of odysseyd before and after, and how many of the
// subscribers the daemon closed. Usage: node bench/stuck-subscribers.js [subscribers] [changes]
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

import { call, progress, ROOT, startOdysseyd } from './lib.js';

const SUBSCRIBERS = Number(process.argv[2] ?? 10);
const CHANGES = Number(process.argv[3] ?? 23_000);
const CONCURRENCY = 8;
const VALUE = 'v'.repeat(2048);

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 1024);
}

const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;

const { proc, socket, dir } = await startOdysseyd();
try {
  const stuck = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const s = connect(socket);
    const subscriber = { closedByDaemon: false };
    // Reads nothing: the daemon's closing shows as the write side failing or the socket ending.
    s.on('connect', () => {
      s.end(Buffer.from('admin.Events+ dom0 name dom0\0'));
      s.pause();
    });
    s.on('error', () => (subscriber.closedByDaemon = true));
    stuck.push({ s, subscriber });
  }
  await call(socket, 'admin.vm.feature.Set', 'dom0', 'warmup', '1');
  const before = { rssMiB: rssMiB(proc.pid), fds: fds(proc.pid) };
  const bar = progress('feature changes');
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CHANGES) {
        const i = next++;
        await call(socket, 'admin.vm.feature.Set', 'dom0', `f${i % 100}`, `${i}${VALUE}`);
        if (i % 500 === 0) bar.update(i, CHANGES);
      }
    }),
  );
  bar.end();
  const after = { rssMiB: rssMiB(proc.pid), fds: fds(proc.pid) };
  // Reading now shows which streams the daemon ended: they reach EOF.
  const ended = await Promise.all(
    stuck.map(
      ({ s }) =>
        new Promise((resolve) => {
          s.on('end', () => resolve(true));
          s.on('close', () => resolve(true));
          s.resume();
          setTimeout(() => resolve(false), 5000).unref();
        }),
    ),
  );
  const result = {
    subscribers: SUBSCRIBERS,
    changes: CHANGES,
    valueBytes: VALUE.length,
    before,
    after,
    subscribersClosedByDaemon: ended.filter(Boolean).length,
  };
  console.log(JSON.stringify(result, null, 2));
  await mkdir(join(ROOT, 'bench/results'), { recursive: true });
  await writeFile(join(ROOT, 'bench/results/stuck-subscribers.json'), `${JSON.stringify(result, null, 2)}\n`);
  for (const { s } of stuck) s.destroy();
} finally {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.on('exit', r));
  await rm(dir, { recursive: true, force: true });
}
