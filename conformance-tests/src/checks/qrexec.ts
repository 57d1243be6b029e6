import type { CapabilityName } from '@odyssey/hal';
import { expectEqual, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import { ECHO_SERVICE, EXIT_SERVICE } from '../services.js';
import { guestsOf } from './guest.js';

const qrexec = (
  id: string,
  run: (ctx: CheckContext) => Promise<void>,
  needs?: readonly CapabilityName[],
): Check => ({
  id: `qrexec.${id}`,
  category: 'qrexec',
  run,
  ...(needs ? { needs } : {}),
});

export const qrexecChecks: readonly Check[] = [
  // dom0 → guest, through odysseyd's local socket qrexec.<name> and odyssey-qrexec-client.
  qrexec('dom0-to-vm-call', async (ctx) => {
    const guests = guestsOf(ctx);
    await guests.installService(QUBES.peer, 'test.Echo', ECHO_SERVICE);
    const reply = await guests.dom0Call(QUBES.peer, 'test.Echo', 'hello\0bytes');
    expectEqual(reply, { code: 0, stdout: 'dom0 says: hello\0bytes', stderr: '' }, 'test.Echo reply to dom0');
  }),
  qrexec('dom0-to-vm-exit-codes', async (ctx) => {
    const guests = guestsOf(ctx);
    await guests.installService(QUBES.peer, 'test.Exit', EXIT_SERVICE);
    const codes: (number | null)[] = [];
    const stderr: string[] = [];
    for (const service of ['test.Exit+3', 'test.Exit+0', 'test.Missing']) {
      const done = await guests.dom0Call(QUBES.peer, service);
      codes.push(done.code);
      if (done.stderr) stderr.push(`${service}: ${done.stderr.trim()}`);
    }
    // A wrong code is explained by what the caller printed (qrexec: ... for a 125).
    const said = stderr.length ? ` (stderr: ${stderr.join('; ')})` : '';
    expectEqual(codes, [3, 0, 127], `exit codes of test.Exit+3, test.Exit+0, test.Missing${said}`);
  }),
  qrexec(
    'vm-to-vm-allowed',
    async (ctx) => {
      const guests = guestsOf(ctx);
      await guests.installService(QUBES.peer, 'test.Echo', ECHO_SERVICE);
      const reply = await guests.qrexecClientVm(QUBES.mgmt, QUBES.peer, 'test.Echo', 'hello\0bytes');
      expectEqual(
        reply,
        { code: 0, stdout: `${QUBES.mgmt} says: hello\0bytes`, stderr: '' },
        'test.Echo reply',
      );
    },
    ['vmToVmVchan'],
  ),
  qrexec('vm-to-vm-refused', async (ctx) => {
    const guests = guestsOf(ctx);
    await guests.installService(QUBES.mgmt, 'test.Echo', ECHO_SERVICE);
    const reply = await guests.qrexecClientVm(QUBES.peer, QUBES.mgmt, 'test.Echo', 'hello');
    expectEqual(reply, { code: 126, stdout: '', stderr: 'Request refused\n' }, 'refused call');
  }),
  qrexec('admin-call-refused', async (ctx) => {
    const reply = await guestsOf(ctx).qrexecClientVm(QUBES.peer, 'dom0', 'admin.vm.List', '');
    expectEqual(reply.code, 126, 'exit code of a denied admin.vm.List');
  }),
];
