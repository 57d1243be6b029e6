/**
 * A template announcing its features end to end: odysseyd on the process
 * backend, qvm-features-request run inside the template's domain (its
 * requests go into the domain's QubesDB, then --commit calls dom0's
 * qubes.FeaturesRequest through the domain's qrexec-client-vm), and dom0
 * applying upstream's rules to what it reads from its copy of that QubesDB.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killLeftoverDomains } from './support/leftover-domains.js';
import { startProcessOdysseyd } from './support/odysseyd.js';
import { cleanEnv, runNode, type Finished } from './support/node-run.js';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const QVM = repo('client/dist/cli/main.js');
const QREXEC_CLIENT = repo('core/dist/daemon/qrexec-client-main.js');
const QREXEC_CLIENT_VM = repo('agent/dist/client-vm-main.js');
const FEATURES_REQUEST = repo('agent/dist/features-request-main.js');
const BUILT = [
  ODYSSEYD,
  QVM,
  QREXEC_CLIENT,
  QREXEC_CLIENT_VM,
  FEATURES_REQUEST,
  repo('backends/process/dist/index.js'),
];

let root: string;
let stateDir: string;
let socket: string;
let daemon: ChildProcess;
let daemonLog: () => string = () => '';

const dom0 = (...args: string[]): Promise<Finished> =>
  runNode([QVM, '--socket', socket, ...args], cleanEnv());

/** Runs the test.Announce service in `vm`: qvm-features-request with `args` inside the domain. */
const announce = (vm: string, args: string): Promise<Finished> =>
  runNode([QREXEC_CLIENT, '--socket-dir', join(stateDir, 'run'), vm, 'test.Announce'], cleanEnv(), args);

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/**
 * Gives running `vm` the test.Announce service, and a qrexec-client-vm under
 * upstream's name (which qvm-features-request --commit runs) aimed at the
 * domain's agent, as the guest's own would be.
 */
async function addAnnounceService(vm: string): Promise<void> {
  const runtime = join(stateDir, 'run');
  const xid = (await dom0('prefs', vm, 'xid')).stdout.trim();
  const bin = join(root, 'bin', vm);
  await mkdir(bin, { recursive: true });
  await writeFile(
    join(bin, 'qrexec-client-vm'),
    [
      '#!/bin/sh',
      `export VCHAN_DOMAIN=${xid} VCHAN_SOCKET_DIR="${join(runtime, 'vchan')}"`,
      `export QREXEC_AGENT_SOCKET="${join(runtime, 'process', vm, 'qrexec-agent.sock')}"`,
      `exec "${process.execPath}" "${QREXEC_CLIENT_VM}" "$@"`,
      '',
    ].join('\n'),
  );
  await chmod(join(bin, 'qrexec-client-vm'), 0o755);
  const services = join(runtime, 'process', vm, 'qubes-rpc');
  await mkdir(services, { recursive: true });
  await writeFile(
    join(services, 'test.Announce'),
    `#!/bin/sh\nread -r args\nPATH="${bin}:$PATH" exec "${process.execPath}" "${FEATURES_REQUEST}" $args\n`,
  );
  await chmod(join(services, 'test.Announce'), 0o755);
}

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npm run build): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-featreq-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  const policyDir = join(root, 'policy.d');
  await mkdir(policyDir, { recursive: true });
  // upstream's 90-default.policy line, and test.Announce for dom0's calls into the qubes.
  await writeFile(join(policyDir, '30-test.policy'), 'qubes.FeaturesRequest * @anyvm dom0 allow\n');
  ({ child: daemon, log: daemonLog } = await startProcessOdysseyd({ root, stateDir, socket, policyDir }));
  const ok = { code: 0, stdout: '', stderr: '' };
  expect(await dom0('create', '--class', 'TemplateVM', '--label', 'black', 'tpl')).toEqual(ok);
  expect(await dom0('create', '--label', 'red', '--template', 'tpl', 'work')).toEqual(ok);
  for (const vm of ['tpl', 'work']) {
    expect(await dom0('start', vm)).toEqual(ok);
    await addAnnounceService(vm);
  }
}, 60_000);

afterAll(async () => {
  if (!root) return;
  if (daemon && daemon.exitCode === null) {
    for (const vm of ['tpl', 'work']) await dom0('kill', vm);
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await killLeftoverDomains(stateDir);
  await rm(root, { recursive: true, force: true });
});

const features = async (vm: string): Promise<string> => (await dom0('features', vm)).stdout;

describe('qubes.FeaturesRequest from a domain', () => {
  it("applies a template's committed requests", async () => {
    expect(await announce('tpl', 'qrexec=1 os-distribution=debian supported-rpc.test.Announce=1\n')).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect(await features('tpl')).toBe('');
    expect(await announce('tpl', 'vmexec=1 --commit\n')).toEqual({ code: 0, stdout: '', stderr: '' });
    const listed = await features('tpl');
    expect(listed).toMatch(/^qrexec +1$/m);
    expect(listed).toMatch(/^vmexec +1$/m);
    expect(listed).toMatch(/^os-distribution +debian$/m);
    expect(listed).toMatch(/^supported-rpc\.test\.Announce +1$/m);
  });

  it('takes only supported-rpc from a template-based qube, and refuses a hostile value', async () => {
    expect(await announce('work', 'qrexec=1 supported-rpc.test.Announce=1 --commit\n')).toMatchObject({
      code: 0,
    });
    expect(await features('work')).toMatch(/^supported-rpc\.test\.Announce +1\n$/);
    // dom0 answers ProtocolError (upstream 4.4's enforce), which qvm-features-request does not read
    // (upstream discards it too).
    await announce('work', 'os=a/b --commit\n');
    await waitFor(() => daemonLog().includes('ProtocolError'));
    expect(await features('work')).toMatch(/^supported-rpc\.test\.Announce +1\n$/);
  });
});
