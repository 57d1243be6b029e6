import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainSpec, Vchan, VmmEvent } from '@odyssey/hal';
import { LxcHostTransport } from '../src/host-transport.js';
import { LxcVmm } from '../src/lxc-vmm.js';
import { GUEST_VCHAN_DIR } from '../src/runtime-files.js';
import { FIRST_UID } from '../src/uid-ranges.js';
import { LxcRig, agentPid, inContainerSh, processes, run, whyNoContainers } from './support/containers.js';

/** qrexec's MSG_HELLO, the first message either end of the control vchan (port 512) sends. */
const MSG_HELLO = 0x300;
const CONTROL_PORT = 512;

const skip = whyNoContainers(['lz4', 'cpio', 'setpriv', 'nsenter']);
if (skip) console.warn(`[lxc backend tests] SKIPPED: ${skip}`);

const spec = (name: string, n: number, privateDir?: string): DomainSpec => ({
  name,
  uuid: `7a0c0de0-0000-4000-8000-00000000000${n}`,
  memoryMiB: 128,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  volumes: privateDir
    ? [{ name: 'private', role: 'private', path: privateDir, format: 'dir', readOnly: false }]
    : [],
  debug: false,
});

async function statusField(pid: number, field: string): Promise<string> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
}

/** Host pids whose pid namespace is `pid`'s. */
async function pidsInNamespaceOf(pid: number): Promise<number[]> {
  const ns = await readlink(`/proc/${pid}/ns/pid`);
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if ((await readlink(`/proc/${entry}/ns/pid`).catch(() => '')) === ns) pids.push(Number(entry));
  }
  return pids;
}

/** The file holding the memory usage of `pid`'s memory cgroup: v1's memory controller, else v2's group. */
async function memoryUsageFile(pid: number): Promise<string> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  const v1 = lines.find((l) => /^\d+:memory:/.test(l));
  if (v1) return `/sys/fs/cgroup/memory${v1.slice(v1.indexOf(':memory:') + 8)}/memory.usage_in_bytes`;
  const v2 = lines.find((l) => l.startsWith('0::'));
  if (!v2) throw new Error(`process ${pid} is in no memory cgroup`);
  return `/sys/fs/cgroup${v2.slice(3)}/memory.current`;
}

function firstBytes(vchan: Vchan, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < n) return;
      vchan.off('data', onData);
      resolve(got.subarray(0, n));
    };
    vchan.on('data', onData);
    vchan.once('error', reject);
    vchan.once('close', () => reject(new Error(`vchan closed after ${got.length} bytes`)));
  });
}

const MIB = 1024 * 1024;
/** A MiB of (i * step) & 255, in the container's node and here. */
const PATTERN = `const pattern = (step) => Buffer.from(Array.from({ length: ${MIB} }, (_, i) => (i * step) & 255));`;
/**
 * In one container: serves one client on the socket argv[1] names (a vchan server of the socket
 * transport), reads a MiB, answers with its own MiB and closes; prints what it read and 'closed'.
 */
const SERVER_SCRIPT = `${PATTERN}
const net = require('node:net'), crypto = require('node:crypto');
const server = net.createServer((s) => {
  server.close();
  const chunks = [];
  let n = 0;
  s.on('data', (c) => {
    chunks.push(c);
    n += c.length;
    if (n < ${MIB}) return;
    console.log('read', n, crypto.createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
    s.end(pattern(7));
  });
  s.on('close', () => console.log('closed'));
});
server.listen(process.argv[1]);`;
/** In the other: connects (retrying until the relay's stand-in is there), sends a MiB, reads to EOF. */
const CLIENT_SCRIPT = `${PATTERN}
const net = require('node:net'), crypto = require('node:crypto');
const attempt = () => {
  const s = net.createConnection(process.argv[1]);
  s.once('error', () => setTimeout(attempt, 20));
  s.once('connect', () => {
    s.removeAllListeners('error');
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      console.log('read', all.length, crypto.createHash('sha256').update(all).digest('hex'), 'then EOF');
    });
    s.write(pattern(13));
  });
};
attempt();`;

/**
 * In a container: writes to its console until a write blocks (argv[1] names the process), a byte
 * at a time, so that no room is left that a shorter line would still fit in.
 */
const FILL_CONSOLE = `const fs = require('node:fs');
const fd = fs.openSync('/dev/console', 'w');
const byte = Buffer.from('x');
for (;;) fs.writeSync(fd, byte);`;

/** Waits until the process whose argv ends with `marker` sits in a write(2) (x86-64 syscall 1). */
async function blockedInWrite(marker: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    for (const { pid, args } of await processes()) {
      if (args.at(-1) !== marker) continue;
      const syscall = await readFile(`/proc/${pid}/syscall`, 'utf8').catch(() => '');
      if (syscall.startsWith('1 ')) return;
    }
    if (Date.now() > deadline) throw new Error(`${marker} never blocked in a write to the console`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function patternSha(step: number): Promise<string> {
  const bytes = Buffer.from(Array.from({ length: MIB }, (_, i) => (i * step) & 255));
  return createHash('sha256').update(bytes).digest('hex');
}

/** Runs node with `script` in the domain's namespaces and root, as its root user; resolves with stdout. */
async function inContainer(name: string, script: string, arg: string): Promise<string> {
  const pid = await agentPid(name);
  const { stdout } = await run('nsenter', ['-t', String(pid), '-a', '-r', '-w', 'node', '-e', script, arg], {
    timeout: 90_000,
  });
  return stdout;
}

describe.skipIf(skip)('lxc backend on a private libvirtd', () => {
  let rig: LxcRig;
  let vmm: LxcVmm;
  let transport: LxcHostTransport;
  let privateDir = '';

  beforeAll(async () => {
    rig = await LxcRig.start('lxc-backend-');
    vmm = rig.vmm;
    transport = new LxcHostTransport({
      nameOf: (d) => vmm.nameOf(d),
      vchanDir: (name) => vmm.files.vchanDir(name),
    });
    privateDir = join(rig.runtimeDir, 'lxa-private');
    await mkdir(privateDir);
    for (const [i, name] of ['lxa', 'lxb'].entries()) {
      await vmm.define(spec(name, i + 1, name === 'lxa' ? privateDir : undefined));
      await rig.startRecorded(name);
    }
    // Both up, or the reason they are not (CI saw lxa stop right after its start, twice).
    for (const name of ['lxa', 'lxb']) await agentPid(name, () => rig.explain(name));
  }, 300_000);

  afterAll(() => rig?.stop(['lxa', 'lxb']), 60_000);

  it('runs the domain: Running with a libvirt id', async () => {
    const state = await vmm.state('lxa');
    expect(state.state).toBe('Running');
    expect(state.xid).toBeGreaterThan(0);
  });

  it("reports what the host pays for a paused container: its cgroup's memory usage", async () => {
    const usageFile = await memoryUsageFile(await agentPid('lxa'));
    const usageKb = async (): Promise<number> => Number(await readFile(usageFile, 'utf8')) / 1024;
    await vmm.pause('lxa');
    try {
      const before = await usageKb();
      const { state, memoryKb, memoryMaxKb } = await vmm.state('lxa');
      const after = await usageKb();
      console.log(`[lxc] paused container: cgroup usage ${Math.round(memoryKb / 1024)} MiB (memory 128 MiB)`);
      expect(state).toBe('Paused');
      // A frozen cgroup's usage still moves a little (the kernel reclaims its page cache).
      expect(memoryKb).toBeGreaterThanOrEqual(Math.min(before, after) - 256);
      expect(memoryKb).toBeLessThanOrEqual(Math.max(before, after) + 256);
      expect(memoryKb).toBeLessThan(memoryMaxKb);
    } finally {
      await vmm.unpause('lxa');
    }
  });

  it("reaches the domain's qrexec agent over vchan by its id: the agent says MSG_HELLO", async () => {
    const { xid } = await vmm.state('lxa');
    const vchan = await transport.connect(String(xid), CONTROL_PORT, { timeoutMs: 30_000 });
    try {
      const header = await firstBytes(vchan, 8);
      expect(header.readUInt32LE(0)).toBe(MSG_HELLO);
    } finally {
      vchan.destroy();
    }
  }, 60_000);

  it("runs the domain's processes as its own unprivileged host uid, with no capabilities", async () => {
    const base = Number(await readFile(vmm.files.uidBaseFile('lxa'), 'utf8'));
    const other = Number(await readFile(vmm.files.uidBaseFile('lxb'), 'utf8'));
    expect(base).toBeGreaterThanOrEqual(FIRST_UID);
    expect(other).not.toBe(base);
    const pid = await agentPid('lxa');
    expect((await statusField(pid, 'Uid')).split(/\s+/)).toEqual(Array(4).fill(String(base)));
    expect((await statusField(pid, 'Gid')).split(/\s+/)).toEqual(Array(4).fill(String(base)));
    expect(await statusField(pid, 'CapEff')).toBe('0000000000000000');
  });

  it('sees only its own processes', async () => {
    const pid = await agentPid('lxa');
    // The container's own /proc, as its processes see it.
    const seen = (await readdir(`/proc/${pid}/root/proc`)).filter((e) => /^\d+$/.test(e));
    const own = await pidsInNamespaceOf(pid);
    expect(seen.length).toBe(own.length);
    expect(seen).toContain('1');
    expect(own.length).toBeLessThan(10);
  });

  it("cannot open another domain's vchan directory: it is not mounted, and its uid is refused", async () => {
    const a = await agentPid('lxa');
    const base = (await readFile(vmm.files.uidBaseFile('lxa'), 'utf8')).trim();
    expect(existsSync(`/proc/${a}/root${vmm.files.vchanDir('lxb')}`)).toBe(false);
    const as = ['--reuid', base, '--regid', base, '--clear-groups', 'ls'];
    await expect(run('setpriv', [...as, vmm.files.vchanDir('lxb')])).rejects.toThrow(/Permission denied/);
    // The same uid lists its own directory, so the refusal above is about the other domain's.
    await expect(run('setpriv', [...as, vmm.files.vchanDir('lxa')])).resolves.toHaveProperty('stderr', '');
  });

  it("joins a vchan between two containers through dom0's relay: bytes both ways, EOF, close", async () => {
    const [a, b] = [(await vmm.state('lxa')).xid, (await vmm.state('lxb')).xid];
    // lxa serves lxb (named by id, as qrexec names peers) on port 700; lxb connects in its own dir.
    const server = inContainer('lxa', SERVER_SCRIPT, `${GUEST_VCHAN_DIR}/vchan.lxa.${b}.700.sock`);
    const client = inContainer('lxb', CLIENT_SCRIPT, `${GUEST_VCHAN_DIR}/vchan.${a}.lxb.700.sock`);
    const [served, got] = await Promise.all([server, client]);
    // Each side hashed what it read; each sent 1 MiB of (i * 7) & 255 (server) or (i * 13) & 255.
    expect(served.trim().split('\n')).toEqual([`read ${MIB} ${await patternSha(13)}`, 'closed']);
    expect(got.trim()).toBe(`read ${MIB} ${await patternSha(7)} then EOF`);
  }, 120_000);

  it('keeps the agent serving while nobody reads the console: its log lines are dropped, not waited for', async () => {
    // Started without a console reader, as odysseyd starts a qube: libvirt_lxc then relays the
    // console to nobody, and a writer blocks once ~40 KB wait.
    await vmm.define(spec('lxq', 3));
    try {
      await vmm.start('lxq');
      const agent = await agentPid('lxq', () => rig.explain('lxq'));
      // Its output goes to the pipe the init's cat copies to the console, never to the pty itself.
      for (const fd of [1, 2]) expect(await readlink(`/proc/${agent}/fd/${fd}`)).toBe('/run/qubes/console');
      const filler = spawn(
        'nsenter',
        ['-t', String(agent), '-a', '-r', '-w', 'node', '-e', FILL_CONSOLE, 'lxq-console-filler'],
        {
          stdio: 'ignore',
        },
      );
      filler.on('error', () => undefined);
      await blockedInWrite('lxq-console-filler');
      // Each control vchan dom0 closes makes the agent log a line to that full console.
      const { xid } = await vmm.state('lxq');
      for (let i = 0; i < 3; i++) {
        const vchan = await transport.connect(String(xid), CONTROL_PORT, { timeoutMs: 30_000 });
        try {
          expect((await firstBytes(vchan, 8)).readUInt32LE(0)).toBe(MSG_HELLO);
        } finally {
          vchan.destroy();
        }
      }
    } finally {
      await vmm.kill('lxq').catch(() => undefined);
      await vmm.undefine('lxq');
    }
  }, 120_000);

  it('binds /home from the private volume (/rw/home), writable by the domain and kept across a restart', async () => {
    const wrote = await inContainerSh(
      'lxa',
      'echo kept >/home/note && cat /rw/home/note && grep -c " /home " /proc/self/mountinfo',
    );
    expect(wrote.split('\n')).toEqual(['kept', '1', '']);
    expect(await readFile(join(privateDir, 'home', 'note'), 'utf8')).toBe('kept\n');
    await vmm.kill('lxa');
    await rig.startRecorded('lxa');
    await agentPid('lxa', () => rig.explain('lxa'));
    expect(await inContainerSh('lxa', 'cat /home/note')).toBe('kept\n');
  }, 120_000);

  it('reports an agent killed as a crash and SIGTERM to its init as a shutdown; kills the other', async () => {
    const stops: VmmEvent[] = [];
    void (async () => {
      for await (const event of vmm.events()) if (event.type === 'stopped') stops.push(event);
    })();
    const stopOf = async (name: string): Promise<VmmEvent> => {
      for (;;) {
        const stop = stops.find((event) => event.name === name);
        if (stop) return stop;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // libvirt says shutdown for both; the crash is known from the init's mark in the vchan dir.
    process.kill(await agentPid('lxa'), 'SIGKILL');
    expect(await stopOf('lxa')).toEqual({ type: 'stopped', name: 'lxa', reason: 'crashed' });
    stops.length = 0;
    await rig.startRecorded('lxa');
    await agentPid('lxa', () => rig.explain('lxa'));
    await vmm.shutdown('lxa', { timeoutMs: 30_000 });
    expect((await vmm.state('lxa')).state).toBe('Halted');
    expect(await stopOf('lxa')).toEqual({ type: 'stopped', name: 'lxa', reason: 'shutdown' });
    await vmm.kill('lxb');
    expect((await vmm.state('lxb')).state).toBe('Halted');
  }, 120_000);
});
