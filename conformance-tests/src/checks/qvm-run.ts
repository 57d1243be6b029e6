import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { parseVmList, type AdminClient } from '@odyssey/client';

import { expectEqual, fail, type Check, type CheckContext } from '../check.js';
import { watchEvents } from '../events.js';
import { QREXEC_CLIENT, QVM } from '../programs.js';
import { QUBES } from '../qubes.js';
import { cleanEnv, run, type Finished } from '../spawn.js';
import { guestsOf } from './guest.js';

/*
 * `qvm run` from dom0 and qrexec calls to `@dispvm` from a qube. Every guest the suite enters has
 * upstream's qubes.VMShell (the image's, the process backend's shared one), so both use it; the
 * disposables come from the dispvm checks' disposable template, which must run before these.
 */

/** dom0's `qvm` with odyssey-qrexec-client on odysseyd's local sockets (`<state dir>/run`, odysseyd.ts's layout). */
export async function dom0Qvm(
  ctx: CheckContext,
  args: readonly string[],
  stdin: string | Buffer = '',
): Promise<Finished> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-qvm-run-'));
  try {
    // qvm spawns the client as a program: a wrapper makes the built entry point one.
    const client = join(dir, 'odyssey-qrexec-client');
    await writeFile(client, `#!/bin/sh\nexec '${process.execPath}' '${QREXEC_CLIENT}' "$@"\n`, {
      mode: 0o755,
    });
    const env = {
      ...cleanEnv(),
      ODYSSEY_DOM0_QREXEC_CLIENT: client,
      ODYSSEY_QREXEC_SOCKET_DIR: join(dirname(ctx.socket), 'state', 'run'),
    };
    return await run(process.execPath, [QVM, '--socket', ctx.socket, ...args], env, stdin);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function disposables(client: AdminClient): Promise<string[]> {
  return parseVmList(await client.call('admin.vm.List', 'dom0'))
    .filter((vm) => vm.klass === 'DispVM')
    .map((vm) => vm.name);
}

/** How long a disposable may take to appear or to go: its start and kill on nested Xen under TCG run to a minute. */
const DISPOSABLE_MS = 90_000;

/** What the calls below send qubes.VMShell: a line of output, then the shell's own exit. */
const SHELL_INPUT = 'echo shell-ran\nexit 0\n';
const SHELL_REPLY = { code: 0, stdout: 'shell-ran\n', stderr: '' };

export const qvmRunChecks: readonly Check[] = [
  {
    id: 'qrexec.qvm-run-exit-codes',
    category: 'qrexec',
    run: async (ctx) => {
      guestsOf(ctx);
      const codes: (number | null)[] = [];
      for (const args of [
        ['--pass-io', QUBES.peer, 'exit 3'],
        ['--pass-io', QUBES.peer, 'true'],
        // Without --pass-io nothing is shown, and the status is still the command's (upstream's qvm-run waits).
        [QUBES.peer, 'exit 5'],
      ]) {
        codes.push((await dom0Qvm(ctx, ['run', ...args])).code);
      }
      expectEqual(
        codes,
        [3, 0, 5],
        "qvm run's exit status for exit 3, true, exit 5 (the last without --pass-io)",
      );
    },
  },
  {
    id: 'qrexec.qvm-run-stdin',
    category: 'qrexec',
    run: async (ctx) => {
      guestsOf(ctx);
      const input = `first line\n${'\0\x01\xff'.repeat(100)}\nlast`;
      // Bytes, not text: the output comes back as latin1, one character per byte.
      const reply = await dom0Qvm(
        ctx,
        ['run', '--pass-io', QUBES.peer, 'cat; echo " [$?]" >&2'],
        Buffer.from(input, 'latin1'),
      );
      expectEqual(reply, { code: 0, stdout: input, stderr: ' [0]\n' }, 'qvm run --pass-io cat');
    },
  },
  {
    id: 'qrexec.qvm-run-no-shell',
    category: 'qrexec',
    run: async (ctx) => {
      guestsOf(ctx);
      // The words reach the program as they are: qubes.VMExec where the qube has it, else shell-quoted.
      expectEqual(
        await dom0Qvm(ctx, ['run', '--pass-io', '--no-shell', QUBES.peer, 'printf', '%s', 'a b']),
        { code: 0, stdout: 'a b', stderr: '' },
        `qvm run --no-shell ${QUBES.peer} printf %s 'a b'`,
      );
    },
  },
  {
    id: 'dispvm.qrexec-call-leaves-nothing',
    category: 'dispvm',
    needs: ['vmToVmVchan'],
    run: async (ctx) => {
      const guests = guestsOf(ctx);
      const { client } = ctx;
      const before = await disposables(client);
      // Calls to a running qube first, for the side-by-side timing below (the median of three).
      const plainTimes: number[] = [];
      for (let i = 0; i < 3; i++) {
        const plainBegin = performance.now();
        const plain = await guests.qrexecClientVm(QUBES.mgmt, QUBES.peer, 'qubes.VMShell', SHELL_INPUT);
        plainTimes.push(performance.now() - plainBegin);
        expectEqual(plain, SHELL_REPLY, `qubes.VMShell in ${QUBES.peer} from ${QUBES.mgmt}`);
      }
      const plainMs = plainTimes.sort((a, b) => a - b)[1] as number;
      // Subscribed only now: a watch's timeout runs from subscription, and three calls on nested Xen
      // under TCG took longer than it before the disposable was even created.
      const added = await watchEvents(client, (ev) => ev.event === 'domain-add', DISPOSABLE_MS);
      const begin = performance.now();
      const reply = await guests.qrexecClientVm(
        QUBES.mgmt,
        `@dispvm:${QUBES.dvmTemplate}`,
        'qubes.VMShell',
        SHELL_INPUT,
      );
      const dispvmMs = performance.now() - begin;
      expectEqual(reply, SHELL_REPLY, `qubes.VMShell in @dispvm:${QUBES.dvmTemplate} from ${QUBES.mgmt}`);
      const disposable = (await added.next).kwargs['vm'];
      if (!disposable) fail('domain-add named no qube');
      const removed = await watchEvents(
        client,
        (ev) => ev.event === 'domain-delete' && ev.kwargs['vm'] === disposable,
        DISPOSABLE_MS,
      );
      // The caller has its reply before the disposable is killed: it may still be on its way out.
      if ((await disposables(client)).includes(disposable)) await removed.next;
      expectEqual(await disposables(client), before, 'disposables after the call');
      ctx.metrics['dispvm_call_ms'] = Math.round(dispvmMs);
      ctx.metrics['running_qube_call_ms'] = Math.round(plainMs);
      ctx.metrics['dispvm_call_ratio'] = Math.round((dispvmMs / plainMs) * 10) / 10;
    },
  },
  {
    id: 'dispvm.qrexec-call-denied',
    category: 'dispvm',
    run: async (ctx) => {
      const guests = guestsOf(ctx);
      const before = await disposables(ctx.client);
      // The policy lets only the management qube call qubes.VMShell in a disposable.
      const reply = await guests.qrexecClientVm(
        QUBES.peer,
        `@dispvm:${QUBES.dvmTemplate}`,
        'qubes.VMShell',
        SHELL_INPUT,
      );
      expectEqual(reply.code, 126, `exit code of a refused @dispvm call from ${QUBES.peer}`);
      expectEqual(await disposables(ctx.client), before, 'disposables after the refused call');
    },
  },
];
