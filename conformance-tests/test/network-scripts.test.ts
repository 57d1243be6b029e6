/**
 * The network checks' guest scripts, run by the host's bash against the suite's own probe server:
 * what a guest would print, byte for byte, without booting one.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectScript, listenerScript, reachScript, sendScript } from '../src/checks/network-scripts.js';
import { PROBE_TOKEN, startProbeServer, type ProbeServer } from '../src/host-servers.js';

/** Runs a script in bash, without blocking: the probe server answering it runs in this process. */
function bash(script: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('close', (code) => resolve({ code, out }));
  });
}

/** A port nothing listens on (a moment ago). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Pids of processes whose command line ends with `args` (the listener outlives its script). */
function pidsEndingWith(args: readonly string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').slice(0, -1);
      if (argv.slice(-args.length).join('\0') === args.join('\0')) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('network check scripts in bash', () => {
  let probe: ProbeServer;
  beforeAll(async () => {
    probe = await startProbeServer();
  });
  afterAll(async () => probe.close());

  it('reach prints the greeting of a server that answers, and nothing for a closed port', async () => {
    expect(await bash(reachScript('127.0.0.1', probe.port))).toEqual({ code: 0, out: PROBE_TOKEN });
    expect(await bash(reachScript('127.0.0.1', await freePort()))).toEqual({ code: 0, out: '' });
  });

  it('the background listener greets every connection with the probe greeting', async () => {
    const port = await freePort();
    expect((await bash(listenerScript(port))).code).toBe(0);
    const args = [Buffer.from(PROBE_TOKEN).toString('base64'), String(port)];
    try {
      // It starts in the background: asked until it answers (the test's timeout is the limit).
      while ((await bash(reachScript('127.0.0.1', port))).out === '') await sleep(100);
      for (let i = 0; i < 3; i++) expect((await bash(reachScript('127.0.0.1', port))).out).toBe(PROBE_TOKEN);
      expect(pidsEndingWith(args)).toHaveLength(1);
    } finally {
      for (const pid of pidsEndingWith(args)) process.kill(pid);
    }
  });

  it('send delivers every byte after reading the greeting', async () => {
    const before = probe.connections.length;
    expect((await bash(sendScript('127.0.0.1', probe.port, 1 << 20))).code).toBe(0);
    while (probe.connections.length === before) await sleep(20);
    expect(probe.connections.at(-1)?.bytes).toBe(1 << 20);
  });

  it('connect prints a whole number of microseconds', async () => {
    const { code, out } = await bash(connectScript('127.0.0.1', probe.port, 3));
    expect(code).toBe(0);
    expect(out).toMatch(/^\d+\n$/);
  });
});
