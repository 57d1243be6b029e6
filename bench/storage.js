// Storage benchmark: (a) volume import throughput through the admin socket
// (ImportWithSize of a 1 GiB file via the client library) against `cp` + sync
// of the same file, and (b) the time to clone a 2 GiB volume (CloneFrom +
// CloneTo) on the default pool and on a file-reflink pool on XFS (reflink=1,
// loop device; needs root and xfsprogs, skipped with the reason otherwise).
// Run after `tsc -b`. Progress goes to stderr on a TTY only.
//
//   BENCH_RUNS=3          import / cp repetitions (median reported)
//   BENCH_IMPORT_MIB=1024 size of the import file
//   BENCH_CLONE_MIB=2048  size of the cloned volume
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';

import { ROOT, call } from './lib.js';

import { AdminClient, SocketTransport } from '../client/dist/index.js';

const MiB = 1024 * 1024;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const IMPORT_SIZE = Number(process.env.BENCH_IMPORT_MIB ?? 1024) * MiB;
const CLONE_SIZE = Number(process.env.BENCH_CLONE_MIB ?? 2048) * MiB;
const TTY = process.stderr.isTTY === true;
const run = promisify(execFile);

function note(text) {
  if (TTY) process.stderr.write(`\r${text}\x1b[K`);
}

function noteDone() {
  if (TTY) process.stderr.write('\r\x1b[K');
}

/** Bytes/s progress for one transfer, TTY only, redrawn at most 10 times a second. */
function transfer(label, total) {
  const start = performance.now();
  let last = 0;
  return (done) => {
    const now = performance.now();
    if (!TTY || (now - last < 100 && done < total)) return;
    last = now;
    const rate = done / MiB / ((now - start) / 1000 || 1e-9);
    note(
      `${label}: ${Math.floor((done / total) * 100)}%  ${(done / MiB).toFixed(0)} MiB  ${rate.toFixed(1)} MiB/s`,
    );
  };
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function startDaemon(dir) {
  const socket = join(dir, 'qubesd.sock');
  const state = join(dir, 'state');
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, 'core/dist/daemon/main.js'),
      '--socket',
      socket,
      '--state-dir',
      state,
      '--backend',
      'none',
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`odysseyd exited with status ${proc.exitCode}`);
    try {
      await call(socket, 'admin.vm.List', 'dom0');
      return { proc, socket, state };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  proc.kill();
  throw new Error('odysseyd did not start');
}

async function stopDaemon(daemon) {
  if (daemon.proc.exitCode !== null) return;
  daemon.proc.kill('SIGTERM');
  await Promise.race([once(daemon.proc, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
  if (daemon.proc.exitCode === null && daemon.proc.signalCode === null) daemon.proc.kill('SIGKILL');
}

/**
 * `size` bytes in 1 MiB blocks drawn from 16 random blocks, each stamped with
 * its index (no two blocks equal, nothing compressible or zero). With
 * `zeroEvery`, every n-th block is zero instead (holes on the server side).
 */
async function* blocks(size, zeroEvery = 0) {
  const pool = Array.from({ length: 16 }, () => randomBytes(MiB));
  const zero = Buffer.alloc(MiB);
  for (let off = 0, i = 0; off < size; off += MiB, i++) {
    const n = Math.min(MiB, size - off);
    if (zeroEvery && i % zeroEvery === zeroEvery - 1) {
      yield zero.subarray(0, n);
      continue;
    }
    const b = Buffer.from(pool[(i * 7) % pool.length].subarray(0, n));
    b.writeUInt32LE(i, 0);
    yield b;
  }
}

async function writeDataFile(path, size) {
  const out = createWriteStream(path);
  const show = transfer('writing test file', size);
  let done = 0;
  for await (const b of blocks(size)) {
    if (!out.write(b)) await once(out, 'drain');
    done += b.length;
    show(done);
  }
  out.end();
  await once(out, 'finish');
  await run('sync');
  noteDone();
}

/** cp of the file plus sync, as the importer fdatasyncs its result. */
async function timeCp(src, dst) {
  await rm(dst, { force: true });
  const t0 = performance.now();
  await run('cp', ['--reflink=never', src, dst]);
  await run('sync');
  const seconds = (performance.now() - t0) / 1000;
  await rm(dst, { force: true });
  return seconds;
}

async function timeImport(client, vm, src, size) {
  const show = transfer(`import ${vm}:private`, size);
  const t0 = performance.now();
  await client.volumes.import(vm, 'private', createReadStream(src, { highWaterMark: MiB }), {
    size,
    withSize: true,
    onProgress: show,
  });
  const seconds = (performance.now() - t0) / 1000;
  noteDone();
  const info = await client.volumes.info(vm, 'private');
  if (Number(info.size) !== size) throw new Error(`imported size ${info.size}, expected ${size}`);
  return seconds;
}

async function cloneCase(client, socket, label, pool, dataDir) {
  const src = `clone-src-${label}`;
  const dst = `clone-dst-${label}`;
  const payload = (name) => `name=${name} label=red${pool ? ` pool=${pool}` : ''}`;
  const method = pool ? 'admin.vm.CreateInPool.StandaloneVM' : 'admin.vm.Create.StandaloneVM';
  await call(socket, method, 'dom0', '', payload(src));
  await call(socket, method, 'dom0', '', payload(dst));
  const show = transfer(`filling ${src}:private`, CLONE_SIZE);
  // "Sparse-ish": every fourth MiB is zero and stays a hole.
  await client.volumes.import(src, 'private', blocks(CLONE_SIZE, 4), {
    size: CLONE_SIZE,
    withSize: true,
    onProgress: show,
  });
  noteDone();
  note(`cloning ${src}:private to ${dst}:private (${label})`);
  const t0 = performance.now();
  const token = await client.volumes.cloneFrom(src, 'private');
  await client.volumes.cloneTo(dst, 'private', token);
  const seconds = (performance.now() - t0) / 1000;
  noteDone();
  const info = await client.volumes.info(dst, 'private');
  if (Number(info.size) !== CLONE_SIZE) throw new Error(`cloned size ${info.size}, expected ${CLONE_SIZE}`);
  const fsType = (await run('stat', ['-f', '-c', '%T', dataDir])).stdout.trim();
  return { pool: info.pool, driver: pool ? 'file-reflink' : undefined, filesystem: fsType, seconds };
}

/**
 * The client's own share: the same ImportWithSize into a socket that discards
 * the payload and answers `0\0`, so the daemon's cost can be told apart.
 */
async function timeClientOnly(dir, src, size) {
  const socket = join(dir, 'discard.sock');
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', () => {});
    s.on('end', () => s.end('0\0'));
  });
  await new Promise((r) => server.listen(socket, r));
  try {
    const client = new AdminClient(new SocketTransport(socket));
    const t0 = performance.now();
    await client.volumes.import('x', 'private', createReadStream(src, { highWaterMark: MiB }), {
      size,
      withSize: true,
    });
    return (performance.now() - t0) / 1000;
  } finally {
    server.close();
  }
}

/** Makes an XFS filesystem with reflink=1 on a loop device; returns its mount point, or why not. */
async function mountXfs(dir) {
  const img = join(dir, 'xfs.img');
  const mnt = join(dir, 'xfs');
  if (process.getuid?.() !== 0) return { error: 'not root (loop mount needs root)' };
  try {
    await run('mkfs.xfs', ['-V']);
  } catch {
    return { error: 'mkfs.xfs not found (install xfsprogs)' };
  }
  try {
    await mkdir(mnt);
    await run('truncate', ['-s', `${Math.ceil((CLONE_SIZE * 3) / 1024 ** 3)}G`, img]);
    await run('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
    await run('mount', ['-o', 'loop', img, mnt]);
  } catch (err) {
    await rm(img, { force: true });
    return { error: `cannot make/mount the XFS image: ${String(err.stderr || err.message).trim()}` };
  }
  return { mnt, img };
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-bench-storage-'));
  const daemon = await startDaemon(dir);
  const client = new AdminClient(new SocketTransport(daemon.socket));
  let xfs;
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    runs: RUNS,
    stateFilesystem: '',
    import: {},
    clone: {},
  };
  try {
    result.stateFilesystem = (await run('stat', ['-f', '-c', '%T', daemon.state])).stdout.trim();

    // (a) import throughput vs cp
    const src = join(dir, 'data.img');
    await writeDataFile(src, IMPORT_SIZE);
    await call(daemon.socket, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=importer label=red');
    const cpTimes = [];
    const importTimes = [];
    const clientOnlyTimes = [];
    const cp = async () => {
      note(`cp run ${cpTimes.length + 1}/${RUNS}`);
      cpTimes.push(await timeCp(src, join(daemon.state, 'cp-copy.img')));
      noteDone();
    };
    const imp = async () => importTimes.push(await timeImport(client, 'importer', src, IMPORT_SIZE));
    for (let i = 0; i < RUNS; i++) {
      // Alternate the order, so neither side always inherits the other's writeback.
      if (i % 2 === 0) {
        await cp();
        await imp();
      } else {
        await imp();
        await cp();
      }
      clientOnlyTimes.push(await timeClientOnly(dir, src, IMPORT_SIZE));
    }
    const mib = IMPORT_SIZE / MiB;
    const importMiBs = mib / median(importTimes);
    const cpMiBs = mib / median(cpTimes);
    const clientOnlyMiBs = mib / median(clientOnlyTimes);
    result.import = {
      bytes: IMPORT_SIZE,
      importSeconds: importTimes,
      cpSeconds: cpTimes,
      importMiBps: importMiBs,
      cpMiBps: cpMiBs,
      clientOnlySeconds: clientOnlyTimes,
      clientOnlyMiBps: clientOnlyMiBs,
      ratio: importMiBs / cpMiBs,
    };
    await rm(src, { force: true });
    // The importer's volume is no longer needed; free its space for the clone case.
    await call(daemon.socket, 'admin.vm.Remove', 'importer');

    // (b) clone on the default pool (plain copy: no reflink on this filesystem)
    result.clone.default = await cloneCase(client, daemon.socket, 'default', undefined, daemon.state);
    result.clone.default.bytes = CLONE_SIZE;

    // ... and on a file-reflink pool on XFS
    xfs = await mountXfs(dir);
    if (xfs.error) {
      result.clone.reflink = { skipped: xfs.error };
    } else {
      const poolDir = join(xfs.mnt, 'pool');
      await mkdir(poolDir);
      await call(
        daemon.socket,
        'admin.pool.Add',
        'dom0',
        'file-reflink',
        `name=xfs-reflink\ndir_path=${poolDir}\n`,
      );
      result.clone.reflink = await cloneCase(client, daemon.socket, 'reflink', 'xfs-reflink', poolDir);
      result.clone.reflink.bytes = CLONE_SIZE;
    }
  } finally {
    await stopDaemon(daemon);
    if (xfs?.mnt) {
      await run('umount', [xfs.mnt]).catch((err) => console.error(`umount ${xfs.mnt}: ${err.message}`));
    }
    await rm(dir, { recursive: true, force: true });
  }

  const rows = [
    ['case', 'result'],
    [
      `import ${IMPORT_SIZE / MiB} MiB (ImportWithSize via socket)`,
      `${result.import.importMiBps.toFixed(1)} MiB/s (median ${median(result.import.importSeconds).toFixed(2)} s)`,
    ],
    [
      `cp + sync of the same file (${result.stateFilesystem})`,
      `${result.import.cpMiBps.toFixed(1)} MiB/s (median ${median(result.import.cpSeconds).toFixed(2)} s)`,
    ],
    ['import / cp', `${result.import.ratio.toFixed(2)}`],
    [
      '  client side alone (same import into a discarding socket)',
      `${result.import.clientOnlyMiBps.toFixed(1)} MiB/s`,
    ],
    [
      `clone ${CLONE_SIZE / MiB} MiB, default pool (${result.clone.default.filesystem}, no reflink)`,
      `${result.clone.default.seconds.toFixed(2)} s`,
    ],
    [
      `clone ${CLONE_SIZE / MiB} MiB, file-reflink pool on XFS`,
      result.clone.reflink.skipped
        ? `skipped: ${result.clone.reflink.skipped}`
        : `${result.clone.reflink.seconds.toFixed(3)} s`,
    ],
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  for (const [a, b] of rows) console.log(`${a.padEnd(width)}  ${b}`);

  const out = join(ROOT, 'bench/results');
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'storage.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${join('bench/results', 'storage.json')}`);
}

await main();
