import { expectEqual, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import { guestsOf } from './guest.js';

const management = (id: string, run: (ctx: CheckContext) => Promise<void>): Check => ({
  id: `management.${id}`,
  category: 'management',
  run,
});

const ok = (stdout: string) => ({ code: 0, stdout, stderr: '' });

/** The announcement's management-domain demo, driven by `qvm --qrexec` inside conf-mgmt. */
export const managementChecks: readonly Check[] = [
  management('create-and-configure', async (ctx) => {
    const guests = guestsOf(ctx);
    // `qvm create` without a template relies on the default one every Qubes install has; when the
    // api checks (which set it) did not run, the suite's template is that default.
    const current = (await ctx.client.call('admin.property.Get', 'dom0', 'default_template')).toString();
    if (current.endsWith(' '))
      await ctx.client.call('admin.property.Set', 'dom0', 'default_template', QUBES.template);
    expectEqual(
      await guests.qvm(QUBES.mgmt, 'create', '--label', 'green', 'managed-work'),
      ok(''),
      'qvm create',
    );
    expectEqual(
      await guests.qvm(QUBES.mgmt, 'prefs', 'managed-work', 'memory', '500'),
      ok(''),
      'qvm prefs set',
    );
    expectEqual(
      await guests.qvm(QUBES.mgmt, 'prefs', 'managed-work', 'memory'),
      ok('500\n'),
      'qvm prefs get',
    );
    // The run's virt mode (--virt-mode: nested Xen has no PVH), set by its creator as an admin would.
    if (ctx.virtMode)
      expectEqual(
        await guests.qvm(QUBES.mgmt, 'prefs', 'managed-work', 'virt_mode', ctx.virtMode),
        ok(''),
        'qvm prefs virt_mode',
      );
    expectEqual(
      (await ctx.client.tags.list('managed-work')).includes(`created-by-${QUBES.mgmt}`),
      true,
      'created-by tag seen by dom0',
    );
  }),
  management('start-and-stop', async (ctx) => {
    const guests = guestsOf(ctx);
    expectEqual(await guests.qvm(QUBES.mgmt, 'start', 'managed-work'), ok(''), 'qvm start');
    expectEqual(
      (await ctx.client.vms.currentState('managed-work')).powerState,
      'Running',
      'state after start',
    );
    expectEqual(
      await guests.qvm(QUBES.mgmt, 'shutdown', '--wait', 'managed-work'),
      ok(''),
      'qvm shutdown --wait',
    );
    expectEqual(
      (await ctx.client.vms.currentState('managed-work')).powerState,
      'Halted',
      'state after shutdown',
    );
  }),
  management('refused-outside-its-qubes', async (ctx) => {
    const guests = guestsOf(ctx);
    const refused = { code: 126, stdout: '', stderr: 'Request refused\n' };
    expectEqual(
      await guests.qrexecClientVm(QUBES.mgmt, QUBES.peer, 'admin.vm.property.Set+memory', '800'),
      refused,
      'property change of a qube it did not create',
    );
    expectEqual(
      await guests.qrexecClientVm(QUBES.mgmt, QUBES.template, 'admin.vm.Start'),
      refused,
      'start of the template',
    );
  }),
];
