/**
 * qvm run and qrexec calls to @dispvm, end to end: a real odysseyd on the process backend (its
 * domains are agent processes with upstream's qubes.VMShell), qvm and odyssey-qrexec-client as
 * processes, qrexec-client-vm inside a domain, a policy directory of real files.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const QREXEC_CLIENT = repo('core/dist/daemon/qrexec-client-main.js');
const QREXEC_CLIENT_VM = repo('agent/dist/client-vm-main.js');
const QVM = repo('client/dist/cli/main.js');
const BUILT = [ODYSSEYD, QREXEC_CLIENT, QREXEC_CLIENT_VM, QVM, repo('backends/process/dist/index.js')];
/** The process backend's consoles are ptys socat holds. */
const SOCAT = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
if (!SOCAT) console.log('qvm console on the process backend skipped: socat is not installed');

interface Finished {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

let root: string;
let stateDir: string;
let socket: string;
let daemonLog = '';
let daemon: ReturnType<typeof spawn> | undefined;

/** The environment without the caller's own Odyssey, vchan and qrexec settings. */
function baseEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(ODYSSEY_|VCHAN_|QREXEC_)/.test(key)),
  );
}

function run(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  stdin: string | Buffer = '',
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: 'pipe' });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** dom0's qvm: odyssey-qrexec-client through a wrapper that records the arguments it was given. */
const qvm = (args: readonly string[], stdin: string | Buffer = ''): Promise<Finished> =>
  run(
    [QVM, '--socket', socket, ...args],
    {
      ...baseEnv(),
      ODYSSEY_DOM0_QREXEC_CLIENT: join(root, 'qrexec-client'),
      ODYSSEY_QREXEC_SOCKET_DIR: join(stateDir, 'run'),
    },
    stdin,
  );

const text = async (args: readonly string[], stdin?: string | Buffer) => {
  const { code, stdout, stderr } = await qvm(args, stdin);
  return { code, stdout: stdout.toString(), stderr };
};

/** qrexec-client-vm run inside `vm`, with the environment the process backend gives a domain's programs. */
async function inDomain(vm: string, target: string, service: string, stdin = ''): Promise<Finished> {
  const xid = (await text(['prefs', vm, 'xid'])).stdout.trim();
  return run(
    [QREXEC_CLIENT_VM, target, service],
    {
      ...baseEnv(),
      VCHAN_DOMAIN: xid,
      VCHAN_SOCKET_DIR: join(stateDir, 'run', 'vchan'),
      QREXEC_AGENT_SOCKET: join(stateDir, 'run', 'process', vm, 'qrexec-agent.sock'),
    },
    stdin,
  );
}

/** Every domain's services: the process backend's directory shared by all of them, disposables included. */
async function installService(service: string, script: string): Promise<void> {
  const dir = join(stateDir, 'run', 'qubes-rpc');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, service), script);
  await chmod(join(dir, service), 0o755);
}

async function waitFor(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

const xidOf = async (vm: string): Promise<string> => (await text(['prefs', vm, 'xid'])).stdout.trim();
const names = async (): Promise<string[]> =>
  (await text(['ls', '--raw-list'])).stdout.split('\n').filter(Boolean);
/**
 * The qubes.xml odysseyd would start from: its journal's last whole record (core's own reader,
 * from the build the test runs), else qubes.xml, which lags the journal until a checkpoint.
 */
async function persistedXml(): Promise<string> {
  const { replayJournal } = (await import(repo('core/dist/persist/journal.js'))) as {
    replayJournal(bytes: Buffer): { readonly document: string | null };
  };
  const journal = await readFile(join(stateDir, 'qubes.xml.journal')).catch(() => Buffer.alloc(0));
  return replayJournal(journal).document ?? (await readFile(join(stateDir, 'qubes.xml'), 'utf8'));
}
const disposablesInXml = async (): Promise<string[]> =>
  [...(await persistedXml()).matchAll(/class="DispVM"/g)].map((m) => m[0]);
const backendDomains = async (): Promise<string[]> =>
  (await readdir(join(stateDir, 'run', 'process'))).filter((name) => name.startsWith('disp'));

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npx tsc -b): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-qvm-run-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  await writeFile(
    join(root, 'qrexec-client'),
    `#!/bin/sh\necho "$*" >> '${join(root, 'qrexec-client.args')}'\nexec '${process.execPath}' '${QREXEC_CLIENT}' "$@"\n`,
    { mode: 0o755 },
  );
  const policyDir = join(root, 'policy.d');
  await mkdir(policyDir, { recursive: true });
  await writeFile(
    join(policyDir, '30-test.policy'),
    [
      'test.Echo * work @dispvm allow',
      'test.Echo * work @dispvm:dvm allow',
      'test.Echo * @anyvm @anyvm deny',
      'test.Hold * work @dispvm allow',
      'qubes.VMShell * work @dispvm allow',
      '',
    ].join('\n'),
  );
  daemon = spawn(
    process.execPath,
    [
      ODYSSEYD,
      ...['--config', '/dev/null', '--backend', 'process', '--state-dir', stateDir, '--socket', socket],
      ...['--policy-dir', policyDir, '--legacy-policy-dir', join(root, 'legacy')],
    ],
    { env: baseEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  daemon.stderr?.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  await waitFor(() => daemonLog.includes('backend process connected') || daemon?.exitCode !== null);
  expect(daemonLog).toContain('backend process connected');
  const ok = { code: 0, stdout: '', stderr: '' };
  expect(await text(['create', '--class', 'TemplateVM', '--label', 'black', 'tpl'])).toEqual(ok);
  for (const vm of ['work', 'idle', 'dvm', 'other']) {
    expect(await text(['create', '--label', 'red', '--template', 'tpl', vm])).toEqual(ok);
  }
  expect(await text(['prefs', 'dvm', 'template_for_dispvms', 'True'])).toEqual(ok);
  expect(await text(['global-prefs', 'default_dispvm', 'dvm'])).toEqual(ok);
  await installService(
    'test.Echo',
    '#!/bin/sh\nprintf "%s from %s: " "$(basename "$PWD")" "$QREXEC_REMOTE_DOMAIN"\ncat\n',
  );
  await installService('test.Hold', '#!/bin/sh\necho holding\nexec sleep 600\n');
  expect(await text(['start', 'work'])).toEqual(ok);
}, 60_000);

afterAll(async () => {
  if (!root) return;
  if (daemon && daemon.exitCode === null) {
    for (const vm of ['work', 'idle']) await qvm(['kill', vm]);
    const exited = new Promise((resolve) => daemon?.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  const domains = join(stateDir, 'run', 'process');
  for (const name of await readdir(domains).catch(() => [])) {
    const record = await readFile(join(domains, name, 'domain.json'), 'utf8').catch(() => undefined);
    if (!record) continue;
    try {
      process.kill(-(JSON.parse(record) as { pid: number }).pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await rm(root, { recursive: true, force: true });
});

describe('qvm run', () => {
  it("with --pass-io passes the command's stdout and stderr and exits with its code", async () => {
    expect(await text(['run', '--pass-io', 'work', 'echo out; echo err >&2; exit 3'])).toEqual({
      code: 3,
      stdout: 'out\n',
      stderr: 'err\n',
    });
  });

  it('with --pass-io passes stdin byte for byte, after the command line', async () => {
    const data = Buffer.concat([Buffer.from('line\n\0'), randomBytes(1 << 20)]);
    const reply = await qvm(['run', '-p', 'work', 'cat'], data);
    expect(reply.code).toBe(0);
    expect(reply.stdout.equals(data)).toBe(true);
  });

  it("without --pass-io shows nothing of the command, says where it runs, and exits with the command's code", async () => {
    const mark = join(root, 'ran');
    expect(await text(['run', 'work', `echo hidden; echo ran > '${mark}'; exit 4`], 'not read\n')).toEqual({
      code: 4,
      stdout: '',
      stderr: `Running 'echo hidden; echo ran > '${mark}'; exit 4' on work\nwork: command failed with code: 4\n`,
    });
    expect(await readFile(mark, 'utf8')).toBe('ran\n');
  });

  it('joins COMMAND and its ARGs as shell words', async () => {
    expect(await text(['run', '-p', 'work', 'printf', '%s|', 'a b', "it's", '$HOME'])).toEqual({
      code: 0,
      stdout: "a b|it's|$HOME|",
      stderr: '',
    });
  });

  it("with the vmexec feature sends the words in qubes.VMExec's argument, which the template's service decodes", async () => {
    // The Debian template's own service, run by this node.
    const script = await readFile(repo('templates/debian-12/rootfs/etc/qubes-rpc/qubes.VMExec'), 'utf8');
    await installService('qubes.VMExec', script.replace(/^#!.*\n/, `#!${process.execPath}\n`));
    expect((await text(['features', 'tpl', 'vmexec', '1'])).code).toBe(0);
    await rm(join(root, 'qrexec-client.args'), { force: true });
    try {
      expect(
        await text(['run', '-p', '--no-shell', 'work', 'printf', '%s|', 'a b', "it's", '$HOME', '-ż']),
      ).toEqual({
        code: 0,
        stdout: "a b|it's|$HOME|-ż|",
        stderr: '',
      });
      // One word with --no-shell is a program too, not a shell command line.
      expect(await text(['run', '-p', '--no-shell', 'work', 'echo hi'])).toMatchObject({
        code: 127,
        stdout: '',
      });
      expect(await text(['run', '-p', 'work', 'echo hi'])).toEqual({ code: 0, stdout: 'hi\n', stderr: '' });
      const socketDir = join(stateDir, 'run');
      expect(await readFile(join(root, 'qrexec-client.args'), 'utf8')).toBe(
        [
          `--socket-dir ${socketDir} work qubes.VMExec+printf+-25s-7C+a-20b+it-27s+-24HOME+---C5-BC`,
          `--socket-dir ${socketDir} work qubes.VMExec+echo-20hi`,
          `--socket-dir ${socketDir} work qubes.VMShell`,
          '',
        ].join('\n'),
      );
    } finally {
      await text(['features', '--unset', 'tpl', 'vmexec']);
    }
  });

  it('with --no-autostart leaves a halted qube halted and exits 1', async () => {
    expect(await text(['run', '--no-autostart', 'idle', 'true'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "Qube 'idle' not started\n",
    });
    expect(await xidOf('idle')).toBe('-1');
  });

  it('starts a halted qube first by default', async () => {
    expect(await text(['run', '-p', 'idle', 'echo up'])).toEqual({ code: 0, stdout: 'up\n', stderr: '' });
    expect(await xidOf('idle')).not.toBe('-1');
  });

  it('passes -u USER to the qrexec client, and no user otherwise (the daemon then uses default_user)', async () => {
    await rm(join(root, 'qrexec-client.args'), { force: true });
    expect((await qvm(['run', '-p', '-u', 'root', 'work', 'true'])).code).toBe(0);
    expect((await qvm(['run', '-p', 'work', 'true'])).code).toBe(0);
    const socketDir = join(stateDir, 'run');
    expect(await readFile(join(root, 'qrexec-client.args'), 'utf8')).toBe(
      `--socket-dir ${socketDir} -u root work qubes.VMShell\n--socket-dir ${socketDir} work qubes.VMShell\n`,
    );
  });

  it("-u root calls the template's qubes.VMRootShell with no user where the template announces it", async () => {
    // The Debian template's own service (process domains do not switch users: its rpc-config
    // forcing root is the agent's, tested in agent/test/run-as.test.ts).
    await installService(
      'qubes.VMRootShell',
      await readFile(repo('templates/debian-12/rootfs/etc/qubes-rpc/qubes.VMRootShell'), 'utf8'),
    );
    expect((await text(['features', 'tpl', 'supported-rpc.qubes.VMRootExec', '1'])).code).toBe(0);
    await rm(join(root, 'qrexec-client.args'), { force: true });
    try {
      expect(await text(['run', '-p', '-u', 'root', 'work', 'echo', '-v', 'as root'])).toEqual({
        code: 0,
        stdout: '-v as root\n',
        stderr: '',
      });
      expect(await text(['run', '-p', '-u', 'root', 'work', 'echo as root'])).toEqual({
        code: 0,
        stdout: 'as root\n',
        stderr: '',
      });
      const socketDir = join(stateDir, 'run');
      expect(await readFile(join(root, 'qrexec-client.args'), 'utf8')).toBe(
        // Words for a program with no vmexec: qubes.VMShell as root, as upstream.
        `--socket-dir ${socketDir} -u root work qubes.VMShell\n--socket-dir ${socketDir} work qubes.VMRootShell\n`,
      );
    } finally {
      await text(['features', '--unset', 'tpl', 'supported-rpc.qubes.VMRootExec']);
    }
  });

  it('--all runs in every running qube but the excluded ones, and never with --pass-io', async () => {
    const marks = join(root, 'all');
    await mkdir(marks);
    // A process domain's working directory is named after it.
    const command = `touch '${marks}'/"$(basename "$PWD")"`;
    expect(await text(['run', '-q', '--all', command])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await readdir(marks)).sort()).toEqual(['idle', 'work']);
    await rm(marks, { recursive: true });
    await mkdir(marks);
    expect((await text(['run', '-q', '--all', '--exclude', 'idle', command])).code).toBe(0);
    expect(await readdir(marks)).toEqual(['work']);
    expect(await text(['run', '--all', '-p', 'true'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: --pass-io cannot be used when more than 1 qube is chosen\n',
    });
  });

  it('refuses an unknown qube, and dom0, before calling anything', async () => {
    expect(await text(['run', 'nosuchvm', 'true'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "error: no such domain: 'nosuchvm'\n",
    });
    expect(await text(['run', 'dom0', 'true'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error: dom0 is this host: run the command directly\n',
    });
  });

  it('--dispvm runs the command in a new disposable that is gone afterwards', async () => {
    const reply = await text(['run', '--pass-io', '--dispvm=dvm', 'basename "$PWD"; cat; exit 5'], 'input\n');
    expect(reply.code).toBe(5);
    expect(reply.stdout).toMatch(/^disp\d+\ninput\n$/);
    expect(await names()).not.toContain(reply.stdout.split('\n')[0]);
    expect(await disposablesInXml()).toEqual([]);
    expect(await backendDomains()).toEqual([]);
  });
});

describe('qrexec calls to @dispvm', () => {
  it('run in a disposable of the default_dispvm, which is removed once the call is over', async () => {
    const reply = await inDomain('work', '@dispvm', 'test.Echo', 'ping');
    expect(reply.code).toBe(0);
    expect(reply.stdout.toString()).toMatch(/^disp\d+ from work: ping$/);
    const disposable = reply.stdout.toString().split(' ')[0] as string;
    // The caller has its answer first; the disposable goes right after.
    await waitFor(async () => !(await names()).includes(disposable));
    expect(await disposablesInXml()).toEqual([]);
    expect(await backendDomains()).toEqual([]);
    expect(daemonLog).toContain(`disposable ${disposable} removed`);
  });

  it('run in a disposable of the named template', async () => {
    const reply = await inDomain('work', '@dispvm:dvm', 'test.Echo', 'pong');
    expect(reply.stdout.toString()).toMatch(/^disp\d+ from work: pong$/);
  });

  it('are refused when the policy denies them, and no disposable is made', async () => {
    const before = daemonLog.match(/disposable \S+ created/g)?.length ?? 0;
    expect(await inDomain('idle', '@dispvm', 'test.Echo', 'x')).toEqual({
      code: 126,
      stdout: Buffer.alloc(0),
      stderr: 'Request refused\n',
    });
    // Not a disposable template: the policy refuses it whatever the rules say.
    expect((await inDomain('work', '@dispvm:other', 'test.Echo', 'x')).code).toBe(126);
    expect(daemonLog.match(/disposable \S+ created/g)?.length ?? 0).toBe(before);
    expect(await disposablesInXml()).toEqual([]);
  });

  it('are refused when the disposable cannot start, which is then removed', async () => {
    // The disposable inherits the feature, and so refuses to start.
    expect((await text(['features', 'dvm', 'prohibit-start', 'testing'])).code).toBe(0);
    try {
      expect(await inDomain('work', '@dispvm', 'test.Echo', 'x')).toEqual({
        code: 126,
        stdout: Buffer.alloc(0),
        stderr: 'Request refused\n',
      });
    } finally {
      await text(['features', '--unset', 'dvm', 'prohibit-start']);
    }
    expect(daemonLog).toMatch(/Qube start is prohibited/);
    expect(await disposablesInXml()).toEqual([]);
    expect((await names()).filter((name) => name.startsWith('disp'))).toEqual([]);
  });

  it("are what qvm --qrexec run --dispvm makes from inside a qube, with the command's output and status", async () => {
    const xid = await xidOf('work');
    const clientVm = join(root, 'qrexec-client-vm');
    await writeFile(clientVm, `#!/bin/sh\nexec '${process.execPath}' '${QREXEC_CLIENT_VM}' "$@"\n`, {
      mode: 0o755,
    });
    const reply = await run(
      [QVM, '--qrexec', 'run', '--pass-io', '--dispvm', '--', 'basename "$PWD"; cat; exit 6'],
      {
        ...baseEnv(),
        VCHAN_DOMAIN: xid,
        VCHAN_SOCKET_DIR: join(stateDir, 'run', 'vchan'),
        QREXEC_AGENT_SOCKET: join(stateDir, 'run', 'process', 'work', 'qrexec-agent.sock'),
        ODYSSEY_QREXEC_CLIENT: clientVm,
      },
      'from work\n',
    );
    expect(reply.code).toBe(6);
    expect(reply.stdout.toString()).toMatch(/^disp\d+\nfrom work\n$/);
    const disposable = reply.stdout.toString().split('\n')[0] as string;
    await waitFor(async () => !(await names()).includes(disposable));
    expect(await disposablesInXml()).toEqual([]);
  });

  it('end with their caller: a caller that dies takes the disposable with it', async () => {
    const xid = await xidOf('work');
    const caller = spawn(process.execPath, [QREXEC_CLIENT_VM, '@dispvm', 'test.Hold'], {
      env: {
        ...baseEnv(),
        VCHAN_DOMAIN: xid,
        VCHAN_SOCKET_DIR: join(stateDir, 'run', 'vchan'),
        QREXEC_AGENT_SOCKET: join(stateDir, 'run', 'process', 'work', 'qrexec-agent.sock'),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    await new Promise<void>((resolve) => caller.stdout.once('data', () => resolve()));
    const [disposable] = (await names()).filter((name) => name.startsWith('disp'));
    expect(disposable).toBeDefined();
    caller.kill('SIGKILL');
    await waitFor(async () => !(await names()).includes(disposable as string));
    expect(await disposablesInXml()).toEqual([]);
    expect(await backendDomains()).toEqual([]);
  });
});

describe.skipIf(!SOCAT)('qvm console on the process backend', () => {
  it('shows what the domain prints on its console, detaches at Ctrl-], and ends with the domain', async () => {
    expect((await text(['start', 'other'])).code).toBe(0);
    const env = { ...baseEnv() };
    const attach = () => spawn(process.execPath, [QVM, '--socket', socket, 'console', 'other'], { env });
    let console1 = attach();
    let seen = '';
    console1.stdout.on('data', (chunk: Buffer) => (seen += chunk.toString()));
    let banner = '';
    console1.stderr.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    await waitFor(() => banner.includes('Escape character is ^]'));
    expect(banner).toMatch(/^Connected to the console of other \(\/dev\/pts\/\d+\)\n/);
    // A process domain's console is what it writes to console.log in its directory (its cwd).
    expect(
      (await text(['run', 'other', 'echo "console line from $(basename "$PWD")" >> console.log'])).code,
    ).toBe(0);
    await waitFor(() => seen.includes('console line from other\n'));
    const detached = new Promise((resolve) => console1.once('exit', resolve));
    console1.stdin.write('\x1d');
    expect(await detached).toBe(0);
    console1 = attach();
    banner = '';
    console1.stderr.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    await waitFor(() => banner.includes('Escape character is ^]'));
    const ended = new Promise((resolve) => console1.once('exit', resolve));
    expect((await text(['kill', 'other'])).code).toBe(0);
    expect(await ended).toBe(0);
    expect(await readdir(join(stateDir, 'run', 'process', 'other'))).not.toContain('console.pty');
  });
});
