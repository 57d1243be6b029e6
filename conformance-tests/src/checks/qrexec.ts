import { expectEqual, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import { ECHO_SERVICE } from '../services.js';
import { guestsOf } from './guest.js';

const qrexec = (id: string, run: (ctx: CheckContext) => Promise<void>): Check => ({
  id: `qrexec.${id}`,
  category: 'qrexec',
  run,
});

export const qrexecChecks: readonly Check[] = [
  qrexec('vm-to-vm-allowed', async (ctx) => {
    const guests = guestsOf(ctx);
    await guests.installService(QUBES.peer, 'test.Echo', ECHO_SERVICE);
    const reply = await guests.qrexecClientVm(QUBES.mgmt, QUBES.peer, 'test.Echo', 'hello\0bytes');
    expectEqual(
      reply,
      { code: 0, stdout: `${QUBES.mgmt} says: hello\0bytes`, stderr: '' },
      'test.Echo reply',
    );
  }),
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
