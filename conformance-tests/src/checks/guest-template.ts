import { setTimeout as sleep } from 'node:timers/promises';
import { expectEqual, fail, Unsupported, type Check, type CheckContext } from '../check.js';
import { cachedTemplateBuild, installDebianTemplate } from '../debian-template.js';
import { guestsOf } from './guest.js';
import { dom0Qvm } from './qvm-run.js';

/** The suite's qube of the Debian template, and the template. */
const DEBIAN_QUBE = 'conf-debian';
const TEMPLATE = 'debian-12';
const ANNOUNCE_WAIT_MS = 180_000;
/** The directory guest.custom-persist keeps (not in the image: its entry creates it). */
const PERSIST_CHECK_DIR = '/var/lib/odyssey-persist-check';
/**
 * The checks that import the template or boot its qube: in a nested Xen dom0 (Xen under TCG) the
 * 2 GiB root goes through the admin API at a few tens of MB/s and a systemd boot takes minutes.
 */
const SLOW_STEP_MS = 600_000;
const MEMORY_MIB = 512;
const VCPUS = 2;
/** The guest image kinds the template's image boots as. */
export const TEMPLATE_GUEST_KINDS = ['odyssey-linux-kvm', 'odyssey-linux-xen', 'odyssey-rootfs-lxc'] as const;

const guest = (id: string, run: (ctx: CheckContext) => Promise<void>, timeoutMs?: number): Check => ({
  id: `guest.${id}`,
  category: 'guest',
  run,
  ...(timeoutMs === undefined ? {} : { timeoutMs }),
});

/** Why the template checks cannot run, once the install check decided; undefined once it is in place. */
let missing: string | undefined = 'guest.template-install did not run';

function requireTemplate(): void {
  if (missing !== undefined) throw new Unsupported('suite', missing);
}

/** A shell script run in the Debian qube through qubes.VMShell; its stdout, or a failure with its stderr. */
async function shell(ctx: CheckContext, script: string, qube = DEBIAN_QUBE): Promise<string> {
  const done = await guestsOf(ctx).dom0Call(qube, 'qubes.VMShell', `${script}\nexit $?\n`);
  if (done.code !== 0) fail(`${script}: exit ${done.code}: ${done.stderr}`);
  return done.stdout;
}

/**
 * A qube of the Debian 12 template (templates/, `qvm template install`), as a user runs one: its
 * distribution, its resources as configured, /home on its private volume across a restart, and its
 * root reverting to the template's at each start. The template is installed from the builder's cache
 * (the test suite's template test fills it): a cold build takes longer than a check may.
 */
export const guestTemplateChecks: readonly Check[] = [
  guest(
    'template-install',
    async (ctx) => {
      const kinds = ctx.backend.capabilities.guestImages;
      // Its image boots as a KVM guest (virtio disks, the KVM vchan), a Xen domU (xvd* disks,
      // libxenvchan) or a container's root (odyssey-lxc-init, the socket transport).
      if (!TEMPLATE_GUEST_KINDS.some((kind) => kinds.includes(kind))) {
        missing =
          `the Debian template is built for ${TEMPLATE_GUEST_KINDS.join(', ')} only; ` +
          `this backend boots ${kinds.join(', ') || 'no guest images'}`;
        throw new Unsupported('suite', missing);
      }
      const cached = await cachedTemplateBuild();
      if (cached !== undefined) {
        missing = cached;
        throw new Unsupported('suite', missing);
      }
      await installDebianTemplate(ctx.socket);
      // The run's virt mode (--virt-mode: nested Xen has no PVH), which the template's qubes inherit.
      if (ctx.virtMode) await ctx.client.vmProperties(TEMPLATE).set('virt_mode', ctx.virtMode);
      await ctx.client.vms.create({ klass: 'AppVM', name: DEBIAN_QUBE, label: 'red', template: TEMPLATE });
      const props = ctx.client.vmProperties(DEBIAN_QUBE);
      await props.set('memory', String(MEMORY_MIB));
      await props.set('maxmem', '0');
      await props.set('vcpus', String(VCPUS));
      // systemd and node under TCG on shared cores take longer than the default minute (as network.ts's qubes).
      await props.set('qrexec_timeout', '600');
      missing = undefined;
    },
    SLOW_STEP_MS,
  ),
  guest(
    'os-release',
    async (ctx) => {
      requireTemplate();
      await ctx.client.vms.start(DEBIAN_QUBE);
      const osRelease = await shell(ctx, 'cat /etc/os-release');
      if (!/^ID=debian$/m.test(osRelease) || !/^VERSION_ID="12"$/m.test(osRelease))
        fail(`/etc/os-release is not Debian 12's: ${osRelease}`);
    },
    SLOW_STEP_MS,
  ),
  guest('hostname', async (ctx) => {
    requireTemplate();
    // As upstream's qubes-early-vm-config: the qube's name, resolved locally (Debian's 127.0.1.1).
    expectEqual(
      await shell(ctx, 'printf \'%s %s\\n\' "$(hostname)" "$(getent hosts "$(hostname)" | cut -d" " -f1)"'),
      `${DEBIAN_QUBE} 127.0.1.1\n`,
      'hostname, and the address it resolves to',
    );
  }),
  guest(
    'system-running',
    async (ctx) => {
      requireTemplate();
      // The agent's qubes.WaitForRunningSystem: systemd's verdict once its start-up is over on
      // stderr, the failed units after it when that verdict is not `running` (degraded).
      const done = await guestsOf(ctx).dom0Call(DEBIAN_QUBE, 'qubes.WaitForRunningSystem');
      expectEqual(
        { code: done.code, said: done.stderr },
        { code: 0, said: 'running\n' },
        `systemd's state in ${DEBIAN_QUBE} (qubes.WaitForRunningSystem)`,
      );
    },
    SLOW_STEP_MS,
  ),
  guest('vcpus-memory', async (ctx) => {
    requireTemplate();
    expectEqual((await shell(ctx, 'nproc')).trim(), String(VCPUS), 'nproc in the guest');
    const kib = Number(/MemTotal:\s+(\d+) kB/.exec(await shell(ctx, 'cat /proc/meminfo'))?.[1]);
    // The kernel keeps some of the RAM for itself.
    if (!(kib <= MEMORY_MIB * 1024 && kib > (MEMORY_MIB - 128) * 1024))
      fail(`MemTotal ${kib} kB for memory=${MEMORY_MIB} MiB`);
  }),
  guest('qvm-run-user', async (ctx) => {
    requireTemplate();
    // `-un` after the command is the command's, as with upstream's qvm-run.
    const whoami = async (...user: string[]) =>
      dom0Qvm(ctx, ['run', '--pass-io', ...user, DEBIAN_QUBE, 'id', '-un']);
    expectEqual(await whoami(), { code: 0, stdout: 'user\n', stderr: '' }, 'qvm run without -u: id -un');
    // Through qubes.VMRootExec, which the template announces (supported-rpc), as upstream's tool chooses.
    expectEqual(
      await whoami('-u', 'root'),
      { code: 0, stdout: 'root\n', stderr: '' },
      'qvm run -u root: id -un',
    );
    expectEqual(
      await dom0Qvm(ctx, ['run', '--pass-io', '-u', 'root', DEBIAN_QUBE, 'id -un']),
      { code: 0, stdout: 'root\n', stderr: '' },
      "qvm run -u root 'id -un' (qubes.VMRootShell)",
    );
  }),
  guest('qvm-run-vmexec', async (ctx) => {
    requireTemplate();
    expectEqual(
      await ctx.client.features.checkWithTemplate(DEBIAN_QUBE, 'vmexec'),
      '1',
      `the vmexec feature of ${DEBIAN_QUBE}'s template`,
    );
    const words = ['printf', '%s|', 'a b', "it's", '$HOME', '-\u017c', ''];
    // The output comes back as latin1, one character per byte.
    const expected = Buffer.from("a b|it's|$HOME|-\u017c||", 'utf8');
    expectEqual(
      await dom0Qvm(ctx, ['run', '--pass-io', '--no-shell', DEBIAN_QUBE, ...words]),
      { code: 0, stdout: expected.toString('latin1'), stderr: '' },
      `qvm run --no-shell ${DEBIAN_QUBE} ${words.join(' ')} (qubes.VMExec)`,
    );
  }),
  guest(
    'home-persists-root-reverts',
    async (ctx) => {
      requireTemplate();
      await shell(
        ctx,
        "echo kept >/home/user/conformance && sudo sh -c 'echo dropped >/etc/conformance' && sync",
      );
      await ctx.client.vms.shutdown(DEBIAN_QUBE, { wait: true });
      await ctx.client.vms.start(DEBIAN_QUBE);
      expectEqual(
        await shell(ctx, 'cat /home/user/conformance'),
        'kept\n',
        '/home/user/conformance after a restart',
      );
      expectEqual(
        await shell(ctx, 'test -e /etc/conformance && echo present || echo absent'),
        'absent\n',
        'a change to / after a restart',
      );
      await ctx.client.vms.kill(DEBIAN_QUBE);
    },
    SLOW_STEP_MS,
  ),
  guest(
    'custom-persist',
    async (ctx) => {
      requireTemplate();
      // Upstream's minimal-state qube (its integration test test_020_custom_persist): with the
      // custom-persist service on, the paths of custom-persist.* features are all that outlives a
      // start (the guest's bind-dirs, from QubesDB /persist/), /home included.
      const features = {
        'service.custom-persist': '1',
        'custom-persist.x': `dir:user:user:0755:${PERSIST_CHECK_DIR}`,
        // Off where an AppVM has it on by default: its flag file is gone (upstream's qubes-sysinit).
        'service.tracker': '',
      };
      for (const [feature, value] of Object.entries(features))
        await ctx.client.features.set(DEBIAN_QUBE, feature, value);
      try {
        await ctx.client.vms.start(DEBIAN_QUBE);
        // The services as the guest's units see them: the AppVM's defaults and its service.* features
        // (meminfo-writer follows maxmem, which differs between backends).
        expectEqual(
          await shell(
            ctx,
            'cd /run/qubes-service && ls custom-persist qubes-update-check; ' +
              'test -e tracker && echo tracker; ls /run/qubes/this-is-appvm /run/qubes/persistent-rw-only',
          ),
          'custom-persist\nqubes-update-check\n/run/qubes/persistent-rw-only\n/run/qubes/this-is-appvm\n',
          "/run/qubes-service and /run/qubes as upstream's qubes-sysinit leaves them in an AppVM",
        );
        expectEqual(
          await shell(ctx, `stat -c '%U:%G %a' ${PERSIST_CHECK_DIR}`),
          'user:user 755\n',
          `${PERSIST_CHECK_DIR} made by its custom-persist entry at the first start`,
        );
        await shell(
          ctx,
          `echo kept >${PERSIST_CHECK_DIR}/file && echo dropped >/home/user/not-listed && sync`,
        );
        await ctx.client.vms.shutdown(DEBIAN_QUBE, { wait: true });
        await ctx.client.vms.start(DEBIAN_QUBE);
        expectEqual(
          await shell(
            ctx,
            `cat ${PERSIST_CHECK_DIR}/file; test -e /home/user/not-listed && echo present || echo absent`,
          ),
          'kept\nabsent\n',
          `after a restart: ${PERSIST_CHECK_DIR}/file (listed), then /home/user/not-listed (not listed)`,
        );
      } finally {
        // A failed start leaves nothing to kill.
        await ctx.client.vms.kill(DEBIAN_QUBE).catch(() => undefined);
        for (const feature of Object.keys(features)) await ctx.client.features.remove(DEBIAN_QUBE, feature);
      }
    },
    SLOW_STEP_MS,
  ),
  guest(
    'template-features',
    async (ctx) => {
      requireTemplate();
      // The TemplateVM announces what its agent provides at boot (qubes.PostInstall →
      // qubes.FeaturesRequest), as upstream's template does after its install; `qvm template install`
      // sets vmexec and supported-rpc.* itself (a qube runs before its template ever booted), not these.
      const props = ctx.client.vmProperties(TEMPLATE);
      await props.set('qrexec_timeout', '600');
      await ctx.client.vms.start(TEMPLATE);
      const wanted = { 'os-distribution': 'debian', 'os-version': '12', qrexec: '1' };
      const announced = async () => {
        const all = new Map(await ctx.client.features.getAll(TEMPLATE));
        return Object.fromEntries(Object.keys(wanted).map((k) => [k, all.get(k) ?? '']));
      };
      let seen = await announced();
      // systemd runs the announcement after the agent is up; under TCG that can take a minute more.
      for (let waited = 0; waited < ANNOUNCE_WAIT_MS && JSON.stringify(seen) !== JSON.stringify(wanted);) {
        await sleep(2000);
        waited += 2000;
        seen = await announced();
      }
      const why =
        JSON.stringify(seen) === JSON.stringify(wanted)
          ? ''
          : await shell(ctx, 'journalctl -b -u odyssey-post-install --no-pager | tail -n 20', TEMPLATE).catch(
              String,
            );
      await ctx.client.vms.shutdown(TEMPLATE, { wait: true });
      expectEqual(seen, wanted, `features ${TEMPLATE} announced at boot (its journal: ${why})`);
      // A boot of systemd under TCG (2-3 min on a loaded host), the announcement, and a shutdown.
    },
    600_000,
  ),
];
