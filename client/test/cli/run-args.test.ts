/**
 * qvm run's command line as upstream's qvm-run reads it, down to the bytes of the call: the
 * qrexec client's arguments (user, qube, service with its argument) and what it is sent first.
 * qubesd is the fake; the qrexec client is a script that records what it was given.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FakeQubesd } from '../helpers/fake-qubesd.js';
import { runQvm } from '../helpers/run-qvm.js';

let dir: string;
let qubesd: FakeQubesd;
/** Features set on `vm` (as admin.vm.feature.CheckWithTemplate answers them). */
const features = new Map<string, string>();

const ok = (payload: string): string => `0\0${payload}`;
const error = (type: string, message: string): string => `2\0${type}\0\0${message}\0`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-run-args-'));
  // One argument a line, then the bytes read on stdin: the call as the real client would make it.
  await writeFile(
    join(dir, 'qrexec-client'),
    `#!/bin/sh\nprintf '%s\\n' "$@" > '${join(dir, 'args')}'\ncat > '${join(dir, 'stdin')}'\n`,
    { mode: 0o755 },
  );
  qubesd = await FakeQubesd.start((request) => {
    switch (request.method) {
      case 'admin.vm.List':
        return ok('dom0 class=AdminVM state=Running\nvm class=AppVM state=Running\n');
      case 'admin.vm.CurrentState':
        return ok('mem=0 mem_static_max=0 cputime=0 power_state=Running');
      case 'admin.vm.Start':
        return error('QubesVMNotHaltedError', 'Domain is running: vm');
      case 'admin.vm.feature.CheckWithTemplate': {
        const value = features.get(request.arg);
        return value === undefined ? error('QubesFeatureNotFoundError', request.arg) : ok(value);
      }
      default:
        return error('QubesException', `unexpected ${request.method}`);
    }
  });
});

afterAll(async () => {
  await qubesd.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs `qvm run ARGS` and returns its status with the call the qrexec client received. */
async function call(
  args: string[],
  invokedAs = 'qvm',
): Promise<{ code: number; stderr: string; argv: string[]; stdin: string }> {
  await rm(join(dir, 'args'), { force: true });
  await writeFile(join(dir, 'stdin'), '');
  const { code, stderr } = await runQvm(
    qubesd,
    invokedAs === 'qvm' ? ['-q', 'run', ...args] : ['-q', ...args],
    {
      env: { ODYSSEY_DOM0_QREXEC_CLIENT: join(dir, 'qrexec-client') },
      invokedAs,
    },
  );
  const argv = (await readFile(join(dir, 'args'), 'utf8').catch(() => '')).split('\n').slice(0, -1);
  return { code, stderr, argv, stdin: await readFile(join(dir, 'stdin'), 'latin1') };
}

describe('qvm run reads its options before VMNAME only, as upstream qvm-run does', () => {
  it("qvm run vm ls -un: -un is the command's, words for a program quoted for qubes.VMShell", async () => {
    expect(await call(['vm', 'ls', '-un'])).toEqual({
      code: 0,
      stderr: '',
      argv: ['vm', 'qubes.VMShell'],
      stdin: 'ls -un; exit\n',
    });
  });

  it('reads the same as qvm-run, its options before VMNAME', async () => {
    expect(await call(['-u', 'root', 'vm', 'ls', '-un'], 'qvm-run')).toEqual({
      code: 0,
      stderr: '',
      argv: ['-u', 'root', 'vm', 'qubes.VMShell'],
      stdin: 'ls -un; exit\n',
    });
  });

  it('qvm run vm -- -x: one -- after VMNAME is skipped, the next word is COMMAND', async () => {
    expect(await call(['vm', '--', '-x'])).toEqual({
      code: 0,
      stderr: '',
      argv: ['vm', 'qubes.VMShell'],
      stdin: '-x; exit\n',
    });
  });

  it("qvm run -u root vm id -u: -u before VMNAME is qvm's user, after COMMAND the command's", async () => {
    expect(await call(['-u', 'root', 'vm', 'id', '-u'])).toEqual({
      code: 0,
      stderr: '',
      argv: ['-u', 'root', 'vm', 'qubes.VMShell'],
      stdin: 'id -u; exit\n',
    });
  });

  it("qvm run --no-shell vm echo 'a b': one program word, quoted for the shell", async () => {
    expect(await call(['--no-shell', 'vm', 'echo', 'a b'])).toEqual({
      code: 0,
      stderr: '',
      argv: ['vm', 'qubes.VMShell'],
      stdin: "echo 'a b'; exit\n",
    });
  });

  it("keeps the program's -v and -q from qvm's own (global) options, and a -- after COMMAND", async () => {
    expect(await call(['vm', 'grep', '-v', '-q', '--', 'x'])).toMatchObject({
      argv: ['vm', 'qubes.VMShell'],
      stdin: 'grep -v -q -- x; exit\n',
    });
    expect(await call(['-pu', 'root', 'vm', 'ls', '-p'])).toMatchObject({
      argv: ['-u', 'root', 'vm', 'qubes.VMShell'],
      stdin: 'ls -p; exit\n',
    });
    expect(await call(['--user=user', '--no-auto', 'vm', 'ls', '--user=x'])).toMatchObject({
      argv: ['-u', 'user', 'vm', 'qubes.VMShell'],
      stdin: 'ls --user=x; exit\n',
    });
  });

  it('refuses an option between VMNAME and COMMAND, and --no-shell with --service, as upstream does', async () => {
    expect(await call(['vm', '-p', 'cat'])).toEqual({
      code: 2,
      stderr: "error: option '-p' after vm: put it before the qube's name, or '--' before COMMAND\n",
      argv: [],
      stdin: '',
    });
    expect(await call(['--service', '--no-shell', 'vm', 'qubes.X'])).toMatchObject({
      code: 2,
      stderr: 'error: --no-shell does not apply to --service\n',
      argv: [],
    });
  });
});

describe("qvm run picks the service upstream qvm-run picks from the qube's features", () => {
  it("with vmexec: program words in qubes.VMExec's argument, nothing on stdin", async () => {
    features.set('vmexec', '1');
    try {
      expect(await call(['vm', 'ls', '-un'])).toEqual({
        code: 0,
        stderr: '',
        argv: ['vm', 'qubes.VMExec+ls+--un'],
        stdin: '',
      });
      expect(await call(['--no-shell', 'vm', 'echo', 'a b'])).toMatchObject({
        argv: ['vm', 'qubes.VMExec+echo+a-20b'],
        stdin: '',
      });
      // A shell command stays qubes.VMShell's.
      expect(await call(['vm', 'echo $HOME'])).toMatchObject({
        argv: ['vm', 'qubes.VMShell'],
        stdin: 'echo $HOME; exit\n',
      });
    } finally {
      features.clear();
    }
  });

  it('-u root with supported-rpc.qubes.VMRootExec: the root services, which force root, and no user', async () => {
    features.set('supported-rpc.qubes.VMRootExec', '1');
    try {
      // Without vmexec, program words still go to qubes.VMShell as root: the agent is too old.
      expect(await call(['-u', 'root', 'vm', 'id', '-u'])).toMatchObject({
        argv: ['-u', 'root', 'vm', 'qubes.VMShell'],
        stdin: 'id -u; exit\n',
      });
      expect(await call(['-u', 'root', 'vm', 'id -u'])).toMatchObject({
        argv: ['vm', 'qubes.VMRootShell'],
        stdin: 'id -u; exit\n',
      });
      features.set('vmexec', '1');
      expect(await call(['-u', 'root', 'vm', 'id', '-u'])).toMatchObject({
        argv: ['vm', 'qubes.VMRootExec+id+--u'],
        stdin: '',
      });
      // Another user keeps the ordinary services.
      expect(await call(['-u', 'user', 'vm', 'id', '-u'])).toMatchObject({
        argv: ['-u', 'user', 'vm', 'qubes.VMExec+id+--u'],
      });
    } finally {
      features.clear();
    }
  });
});
