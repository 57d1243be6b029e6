import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ServiceSideStreams } from '@odyssey/qrexec';
import { builtinService } from '../src/builtin-services.js';
import { QrexecWorld } from './fixture.js';

async function drain(stream: Readable | null | undefined): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream ?? []) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

const underSystemd = existsSync('/run/systemd/system');
if (underSystemd)
  console.warn('[builtin-services] one test SKIPPED: systemd runs this host, so the agent would wait for it');

describe('qubes.WaitForRunningSystem, answered by the agent', () => {
  let world: QrexecWorld;
  beforeEach(async () => {
    world = await QrexecWorld.create();
    await world.addDomain('work', 3);
  });
  afterEach(() => world.close());

  it.skipIf(underSystemd)(
    'returns at once, empty and with status 0, where the system has no systemd',
    async () => {
      const result = await world.domain('work').daemon.callService('qubes.WaitForRunningSystem');
      expect(result).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), exitCode: 0 });
    },
  );

  it("leaves the call to a service file of that name, when the guest's image has one", async () => {
    await world.addScript(
      world.domain('work').serviceDir,
      'qubes.WaitForRunningSystem',
      '#!/bin/sh\necho degraded >&2\nexit 1\n',
    );
    const result = await world.domain('work').daemon.callService('qubes.WaitForRunningSystem');
    expect(result).toEqual({ stdout: Buffer.alloc(0), stderr: Buffer.from('degraded\n'), exitCode: 1 });
  });

  it('answers no other service: those stay not found (127)', async () => {
    const result = await world.domain('work').daemon.callService('qubes.WaitForSession');
    expect(result.exitCode).toBe(127);
  });
});

describe('qubes.WaitForRunningSystem under systemd (a stand-in systemctl)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'builtin-services-'));
    await mkdir(join(dir, 'bin'));
    await mkdir(join(dir, 'systemd'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** A systemctl that says `state` to is-system-running and names a failed unit to --failed. */
  async function systemctl(state: string, status: number): Promise<NodeJS.ProcessEnv> {
    const script = `#!/bin/sh
case "$*" in
  *is-system-running*) echo ${state}; exit ${status} ;;
  *--failed*) echo "odyssey-swap.service loaded failed failed" ;;
esac
`;
    await writeFile(join(dir, 'bin', 'systemctl'), script);
    await chmod(join(dir, 'bin', 'systemctl'), 0o755);
    return { ...process.env, PATH: `${join(dir, 'bin')}:${process.env['PATH'] ?? ''}` };
  }

  async function run(env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; code: number }> {
    const start = builtinService('qubes.WaitForRunningSystem+', env, join(dir, 'systemd'));
    const started = (await start?.()) as ServiceSideStreams;
    started.stdin?.end();
    const [stdout, stderr, code] = await Promise.all([
      drain(started.stdout),
      drain(started.stderr),
      started.exitCode,
    ]);
    return { stdout, stderr, code };
  }

  it("waits for systemd's verdict, and says it on stderr", async () => {
    expect(await run(await systemctl('running', 0))).toEqual({ stdout: '', stderr: 'running\n', code: 0 });
  });

  it('fails as systemd does when the system is degraded, naming the failed units', async () => {
    expect(await run(await systemctl('degraded', 1))).toEqual({
      stdout: '',
      stderr: 'degraded\nodyssey-swap.service loaded failed failed\n',
      code: 1,
    });
  });
});
