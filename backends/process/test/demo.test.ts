/**
 * The two demos of the Admin API announcement ("Simple monitoring VM demo",
 * "Simple management VM demo"), replayed for real: odysseyd on the process
 * backend, the generated default admin policy plus the demo grants, and the
 * `qvm` CLI run inside test-mon and test-mgmt, reaching dom0 through their
 * own qrexec-client-vm, agent and vchans.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killLeftoverDomains } from './support/leftover-domains.js';
import { startProcessOdysseyd } from './support/odysseyd.js';
import { cleanEnv, runNode, type Finished } from './support/node-run.js';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const POLICY_TOOL = repo('core/dist/daemon/policy-cli-main.js');
const QVM = repo('client/dist/cli/main.js');
const QREXEC_CLIENT_VM = repo('agent/dist/client-vm-main.js');
const BUILT = [ODYSSEYD, POLICY_TOOL, QVM, QREXEC_CLIENT_VM, repo('backends/process/dist/index.js')];

const REFUSED = 'Service call error: Request refused\n';
const TAG_REFUSED = 'changing this tag is prohibited by qubes.ext.admin.AdminExtension\n';
const RENAME_REFUSED = "property 'name' is write-once and already set\n";

let root: string;
let stateDir: string;
let socket: string;
let daemon: ChildProcess;
let daemonLog: () => string = () => '';
const ok = (stdout: string): Finished => ({ code: 0, stdout, stderr: '' });

/** `qvm` in dom0, on the admin socket. */
const dom0 = (...args: string[]): Promise<Finished> =>
  runNode([QVM, '--socket', socket, ...args], cleanEnv());

/** What a process domain's programs see: its domain id, the vchan directory and its agent's socket. */
async function domainEnv(vm: string): Promise<NodeJS.ProcessEnv> {
  const xid = (await dom0('prefs', vm, 'xid')).stdout.trim();
  const runtime = join(stateDir, 'run');
  return {
    ...cleanEnv(),
    VCHAN_DOMAIN: xid,
    VCHAN_SOCKET_DIR: join(runtime, 'vchan'),
    QREXEC_AGENT_SOCKET: join(runtime, 'process', vm, 'qrexec-agent.sock'),
    ODYSSEY_QREXEC_CLIENT: QREXEC_CLIENT_VM,
  };
}

/** `qvm --qrexec` inside a domain. */
async function inVm(vm: string, ...args: string[]): Promise<Finished> {
  return runNode([QVM, '--qrexec', ...args], await domainEnv(vm));
}

/** `qrexec-client-vm TARGET SERVICE` inside a domain. */
async function clientVm(vm: string, target: string, service: string, stdin = ''): Promise<Finished> {
  return runNode([QREXEC_CLIENT_VM, target, service], await domainEnv(vm), stdin);
}

/** The test's environment without anything that would point a program at another daemon or domain. */

/** The generated default policy, plus the announcement's grants as upstream's R4.1 syntax writes them. */
async function writePolicy(policyDir: string, legacyDir: string): Promise<void> {
  expect((await runNode([POLICY_TOOL, 'generate-admin', policyDir], cleanEnv())).code).toBe(0);
  const include = (name: string, lines: string[]) =>
    appendFile(join(policyDir, 'include', name), `${lines.join('\n')}\n`);
  await include('admin-local-rwx', ['test-mgmt @tag:created-by-test-mgmt allow target=dom0']);
  await include('admin-local-ro', [
    'test-mon @adminvm allow target=dom0',
    'test-mon @anyvm allow target=dom0',
    // qvm ls shows dom0's label too.
    'test-mgmt @adminvm allow target=dom0',
  ]);
  await include('admin-global-ro', [
    'test-mgmt @adminvm allow target=dom0',
    'test-mgmt @tag:created-by-test-mgmt allow target=dom0',
    'test-mon @adminvm allow target=dom0',
  ]);
  await writeFile(
    join(policyDir, '30-demo.policy'),
    [
      '# /etc/qubes-rpc/policy/admin.vm.List of the monitoring demo',
      'admin.vm.List * test-mon @adminvm allow target=dom0',
      'admin.vm.List * test-mon @anyvm allow target=dom0',
      '# a service of test-mon that test-mgmt may call',
      'test.Echo * test-mgmt test-mon allow',
      'test.Echo * test-mgmt @tag:created-by-test-mgmt allow',
      '',
    ].join('\n'),
  );
  // The management demo's admin.vm.Create.AppVM grant, kept in its R4.0 file as upstream's 35-compat.policy reads it.
  await writeFile(join(policyDir, '35-compat.policy'), '!compat-4.0\n');
  await mkdir(legacyDir, { recursive: true });
  await writeFile(join(legacyDir, 'admin.vm.Create.AppVM'), 'test-mgmt $adminvm allow,target=$adminvm\n');
}

async function startDaemon(policyDir: string, legacyPolicyDir: string): Promise<void> {
  ({ child: daemon, log: daemonLog } = await startProcessOdysseyd({
    root,
    stateDir,
    socket,
    policyDir,
    legacyPolicyDir,
  }));
}

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0)
    throw new Error(`build first (npx tsc -b backends/process client): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-demo-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  const policyDir = join(root, 'policy.d');
  const legacyDir = join(root, 'qubes-rpc-policy');
  await writePolicy(policyDir, legacyDir);
  await startDaemon(policyDir, legacyDir);
  // dom0's part: a template, the two demo qubes, started with their agents.
  expect(await dom0('create', '--class', 'TemplateVM', '--label', 'black', 'debian-12')).toEqual(ok(''));
  expect(await dom0('global-prefs', 'default_template', 'debian-12')).toEqual(ok(''));
  expect(await dom0('create', '--label', 'yellow', 'test-mon')).toEqual(ok(''));
  expect(await dom0('create', '--label', 'green', 'test-mgmt')).toEqual(ok(''));
  expect(await dom0('start', 'test-mon', 'test-mgmt')).toEqual(ok(''));
});

afterAll(async () => {
  if (!root) return;
  if (daemon && daemon.exitCode === null) {
    await dom0('kill', 'test-mon', 'test-mgmt');
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  // Domains outlive the daemon by design.
  await killLeftoverDomains(stateDir);
  await rm(root, { recursive: true, force: true });
});

describe('monitoring VM demo: test-mon', () => {
  it('lists every qube with qvm ls, from inside its domain, as dom0 sees them', async () => {
    const table = [
      'NAME       STATE    CLASS       LABEL   TEMPLATE   NETVM',
      'debian-12  Halted   TemplateVM  black   -          -',
      'dom0       Running  AdminVM     black   -          -',
      'test-mgmt  Running  AppVM       green   debian-12  -',
      'test-mon   Running  AppVM       yellow  debian-12  -',
      '',
    ].join('\n');
    expect(await inVm('test-mon', 'ls')).toEqual(ok(table));
    expect(await dom0('ls')).toEqual(ok(table));
  });

  it('reads properties of other qubes', async () => {
    expect(await inVm('test-mon', 'prefs', 'test-mgmt', 'label')).toEqual(ok('green\n'));
    expect(await inVm('test-mon', 'prefs', 'debian-12', 'memory')).toEqual(ok('400\n'));
    // Domain ids count from 1 in start order, as the process backend numbers its domains.
    expect(await inVm('test-mon', 'ls', '--raw-data', '-O', 'name,xid', 'test-mon', 'test-mgmt')).toEqual(
      ok('test-mgmt|2\ntest-mon|1\n'),
    );
  });

  it('is refused every change: the policy denies, qrexec-client-vm exits 126', async () => {
    expect(await inVm('test-mon', 'prefs', 'test-mgmt', 'memory', '800')).toEqual({
      code: 1,
      stdout: '',
      stderr: REFUSED,
    });
    expect(await inVm('test-mon', '--json', 'prefs', 'test-mgmt', 'memory', '800')).toEqual({
      code: 1,
      stdout: '',
      stderr: `${JSON.stringify({ error: { type: 'QubesDaemonAccessError', message: REFUSED.trimEnd() } })}\n`,
    });
    expect(await clientVm('test-mon', 'test-mgmt', 'admin.vm.property.Set+memory', '800')).toEqual({
      code: 126,
      stdout: '',
      stderr: 'Request refused\n',
    });
    // The refusal is in odysseyd's log with who asked what of whom; allowed calls are logged with their result.
    expect(daemonLog()).toMatch(
      /^<6>odysseyd: info: admin call: source=test-mon method=admin\.vm\.property\.Set dest=test-mgmt arg=memory policy=deny reason=.+$/m,
    );
    expect(daemonLog()).toContain(
      "admin call: source=test-mon method=admin.vm.List dest=dom0 arg='' policy=allow result=ok\n",
    );
    expect(await inVm('test-mon', 'start', 'debian-12')).toEqual({
      code: 1,
      stdout: '',
      stderr: `Starting qube failed: debian-12: ${REFUSED}`,
    });
    expect(await inVm('test-mon', 'create', '--label', 'red', 'rogue')).toEqual({
      code: 1,
      stdout: '',
      stderr: `Error creating VM: ${REFUSED}`,
    });
    expect(await dom0('prefs', 'test-mgmt', 'memory')).toEqual(ok('400\n'));
    expect(await dom0('ls', '--raw-list')).toEqual(ok('debian-12\ndom0\ntest-mgmt\ntest-mon\n'));
  });
});

describe('management VM demo: test-mgmt', () => {
  it('creates and configures qubes, which it then sees with qvm ls', async () => {
    expect(await inVm('test-mgmt', 'create', '--label', 'green', 'managed-work')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'create', '--label', 'red', 'managed-research')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'create', '--label', 'green', 'managed-vpn')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'prefs', 'managed-vpn', 'provides_network', 'true')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'prefs', 'managed-work', 'netvm', 'managed-vpn')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'ls')).toEqual(
      ok(
        [
          'NAME              STATE    CLASS    LABEL  TEMPLATE   NETVM',
          'dom0              Running  AdminVM  black  -          -',
          'managed-research  Halted   AppVM    red    debian-12  -',
          'managed-vpn       Halted   AppVM    green  debian-12  -',
          'managed-work      Halted   AppVM    green  debian-12  managed-vpn',
          '',
        ].join('\n'),
      ),
    );
  });

  it('leaves the created-by-test-mgmt tag on what it created, as dom0 sees', async () => {
    // guivm-/audiovm- tags come with the default guivm and audiovm (dom0), as upstream sets them.
    for (const vm of ['managed-work', 'managed-research', 'managed-vpn'])
      expect(await dom0('tags', vm)).toEqual(ok('audiovm-dom0\ncreated-by-test-mgmt\nguivm-dom0\n'));
    expect(await dom0('tags', 'test-mon')).toEqual(ok('audiovm-dom0\ncreated-by-dom0\nguivm-dom0\n'));
    expect(await dom0('prefs', 'managed-work', 'netvm')).toEqual(ok('managed-vpn\n'));
  });

  it('starts and stops the qubes it manages, the netvm first', async () => {
    const states = () => dom0('ls', '--raw-data', '-O', 'name,state', 'managed-vpn', 'managed-work');
    expect(await inVm('test-mgmt', 'start', 'managed-work')).toEqual(ok(''));
    expect(await states()).toEqual(ok('managed-vpn|Running\nmanaged-work|Running\n'));
    expect(await inVm('test-mgmt', 'shutdown', '--wait', 'managed-work')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'shutdown', '--wait', 'managed-vpn')).toEqual(ok(''));
    expect(await states()).toEqual(ok('managed-vpn|Halted\nmanaged-work|Halted\n'));
  });

  it('is refused reads, writes and starts of qubes it did not create', async () => {
    const refused = { code: 126, stdout: '', stderr: 'Request refused\n' };
    for (const target of ['test-mon', 'debian-12']) {
      expect(await clientVm('test-mgmt', target, 'admin.vm.property.Get+label')).toEqual(refused);
      expect(await clientVm('test-mgmt', target, 'admin.vm.property.Set+memory', '800')).toEqual(refused);
      expect(await clientVm('test-mgmt', target, 'admin.vm.Start')).toEqual(refused);
    }
    // Not even listed to it, so the CLI does not know the qube.
    expect(await inVm('test-mgmt', 'prefs', 'test-mon', 'label')).toEqual({
      code: 2,
      stdout: '',
      stderr: "error: no such domain: 'test-mon'\n",
    });
    expect(await dom0('ls', '--raw-data', '-O', 'name,state', 'test-mon', 'debian-12')).toEqual(
      ok('debian-12|Halted\ntest-mon|Running\n'),
    );
  });

  it('cannot remove or forge created-by tags, nor rename what it manages', async () => {
    const denied = { code: 1, stdout: '', stderr: TAG_REFUSED };
    expect(await inVm('test-mgmt', 'tags', 'managed-work', 'del', 'created-by-test-mgmt')).toEqual(denied);
    expect(await inVm('test-mgmt', 'tags', 'managed-work', 'add', 'created-by-test-mon')).toEqual(denied);
    // The exception dom0 raised, by name, as qubesadmin would see it.
    expect(await inVm('test-mgmt', '--json', 'tags', 'managed-work', 'del', 'created-by-test-mgmt')).toEqual({
      code: 1,
      stdout: '',
      stderr: `${JSON.stringify({ error: { type: 'PermissionDenied', message: TAG_REFUSED.trimEnd() } })}\n`,
    });
    expect(await inVm('test-mgmt', 'tags', 'managed-work', 'add', 'work')).toEqual(ok(''));
    expect(await inVm('test-mgmt', 'prefs', 'managed-work', 'name', 'managed-home')).toEqual({
      code: 1,
      stdout: '',
      stderr: RENAME_REFUSED,
    });
    expect(await dom0('tags', 'managed-work')).toEqual(
      ok('audiovm-dom0\ncreated-by-test-mgmt\nguivm-dom0\nwork\n'),
    );
  });
});

/** Installs test.Echo in a domain's service directory (its /etc/qubes-rpc). */
async function installEcho(vm: string): Promise<void> {
  const dir = join(stateDir, 'run', 'process', vm, 'qubes-rpc');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'test.Echo'),
    '#!/bin/sh\nprintf "%s says: " "$QREXEC_REMOTE_DOMAIN"\nexec cat\n',
  );
  await chmod(join(dir, 'test.Echo'), 0o755);
}

describe('VM-to-VM qrexec', () => {
  it('lets test-mgmt call test.Echo in test-mon, as the policy allows, and not the other way', async () => {
    await installEcho('test-mon');
    expect(await clientVm('test-mgmt', 'test-mon', 'test.Echo', 'hello\0bytes')).toEqual(
      ok('test-mgmt says: hello\0bytes'),
    );
    expect(await clientVm('test-mon', 'test-mgmt', 'test.Echo', 'hello')).toEqual({
      code: 126,
      stdout: '',
      stderr: 'Request refused\n',
    });
  });

  it('starts a halted target the policy lets it call (autostart)', async () => {
    await installEcho('managed-research');
    expect(await clientVm('test-mgmt', 'managed-research', 'test.Echo', 'wake up')).toEqual(
      ok('test-mgmt says: wake up'),
    );
    expect(await dom0('ls', '--raw-data', '-O', 'name,state', 'managed-research')).toEqual(
      ok('managed-research|Running\n'),
    );
  });
});
