import { setTimeout as sleep } from 'node:timers/promises';

import { QubesError } from '@odyssey/client';

import { expectEqual, fail, Unsupported, type Check, type CheckContext } from '../check.js';
import { cachedTemplateBuild, installDebianTemplate } from '../debian-template.js';
import {
  PROBE_TOKEN,
  startDnsServer,
  startProbeServer,
  type DnsServer,
  type ProbeServer,
} from '../host-servers.js';
import { guestsOf } from './guest.js';
import { TEMPLATE_GUEST_KINDS } from './guest-template.js';
import {
  connectScript,
  DIAGNOSE_SCRIPT,
  listenerScript,
  reachScript,
  sendScript,
} from './network-scripts.js';

/*
 * Networking through service qubes, on the Debian template: sys-net (provides network, no netvm:
 * the backend's uplink) → sys-firewall → an AppVM, as Qubes ships them. The suite's servers listen
 * on the host's 127.0.0.1, which sys-net's uplink shows as 10.0.2.2 (QEMU's user-mode network on
 * KVM; dom0's uplink bridge on Xen, which maps that address to its loopback); no check sends
 * traffic anywhere else. One chain is booted for all checks (a Debian qube takes 20–60 s to boot
 * under TCG), and each check leaves it as the next one expects.
 */

const SYS_NET = 'conf-sys-net';
const SYS_FIREWALL = 'conf-sys-firewall';
const APP = 'conf-net-app';
const APP2 = 'conf-net-app2';
const QUBES = [SYS_NET, SYS_FIREWALL, APP, APP2] as const;
/** The host's loopback as the uplink shows it. */
const HOST = '10.0.2.2';
const DNS_NAME = 'conformance.odyssey.test';
/** Documentation address (TEST-NET-1): what the suite's DNS server answers, never contacted. */
const DNS_ADDRESS = '192.0.2.53';
/** What a client is shown instead of its own addresses (upstream's net.fake-ip, net.fake-gateway). */
const VISIBLE = { ip: '10.138.77.7', gateway: '10.138.255.1' };
/** The address a spoofing client claims: in the clients' range, but not its own. */
const SPOOFED = '10.137.0.250';
const PEER_PORT = 7777;
const PAYLOAD_MIB = 8;
const CONNECTS = 10;
/** How long a change (a firewall rule, a new link) may take to show in the guests. */
const SETTLE_MS = 90_000;

/** The chain, booted in order: each qube's start, then a check that it reaches the host through its netvms. */
const CHAIN = [
  { vm: SYS_NET, start: 'start-sys-net', reach: 'uplink', via: [] },
  { vm: SYS_FIREWALL, start: 'start-sys-firewall', reach: 'through-one-netvm', via: [SYS_NET] },
  { vm: APP, start: 'start-app', reach: 'through-two-netvms', via: [SYS_FIREWALL, SYS_NET] },
] as const;

const net = (id: string, run: (ctx: CheckContext) => Promise<void>, timeoutMs?: number): Check => ({
  id: `network.${id}`,
  category: 'network',
  needs: ['network'],
  ...(timeoutMs === undefined ? {} : { timeoutMs }),
  run,
});

/**
 * A qube's start: as long as its qrexec_timeout lets it take. Two Debian qubes booting under TCG on
 * a loaded 2-core machine took over the suite's default 180 s, and every later check then failed.
 */
const START_MS = 600_000;
/** The setup installs the template when the guest category has not: 2 GiB through the admin API, minutes in nested Xen. */
const INSTALL_MS = 600_000;

interface Servers {
  readonly probe: ProbeServer;
  /** A second server, for a rule that lets one port through and not another. */
  readonly other: ProbeServer;
}
let servers: Servers | undefined;
let missing: string | undefined = 'network.setup did not run';

function ready(): Servers {
  if (missing !== undefined || !servers) throw new Unsupported('suite', missing ?? 'no servers');
  return servers;
}

/** A script run by bash in `vm` through qubes.VMShell; its stdout, or a failure with its stderr. */
async function bash(ctx: CheckContext, vm: string, script: string): Promise<string> {
  const done = await guestsOf(ctx).dom0Call(
    vm,
    'qubes.VMShell',
    `bash <<'ODYSSEY_NET_EOF'\n${script}\nODYSSEY_NET_EOF\nexit $?\n`,
  );
  if (done.code !== 0) fail(`in ${vm}: ${script}: exit ${done.code}: ${done.stderr}`);
  return done.stdout;
}

/** Whether `vm` gets the probe server's greeting from `host:port` within a few seconds. */
async function reaches(ctx: CheckContext, vm: string, host: string, port: number): Promise<boolean> {
  return (await bash(ctx, vm, reachScript(host, port))) === PROBE_TOKEN;
}

/** `vm`'s links, addresses, routes and network daemon log, for a failure's reason. */
async function diagnose(ctx: CheckContext, vm: string): Promise<string> {
  try {
    return (await bash(ctx, vm, DIAGNOSE_SCRIPT)).trim();
  } catch (err) {
    return `(no diagnosis: ${err instanceof Error ? err.message : String(err)})`;
  }
}

/**
 * Asks until `vm` reaching `host:port` is `want`; fails with `what` when it never is, and with the
 * networking of `vm` and of the qubes in `inspect` (its netvms), so that a failure says where it stopped.
 */
async function until(
  ctx: CheckContext,
  vm: string,
  host: string,
  port: number,
  want: boolean,
  what: string,
  inspect: readonly string[] = [],
): Promise<void> {
  const deadline = performance.now() + SETTLE_MS;
  while ((await reaches(ctx, vm, host, port)) !== want) {
    if (performance.now() > deadline) {
      const seen: string[] = [];
      for (const name of [vm, ...inspect]) seen.push(`[${name}]\n${await diagnose(ctx, name)}`);
      fail(
        `${what} (still ${want ? 'unreachable' : 'reachable'} after ${SETTLE_MS / 1000} s)\n${seen.join('\n')}`,
      );
    }
    await sleep(2000);
  }
}

const props = (ctx: CheckContext, vm: string) => ctx.client.vmProperties(vm);

async function ipOf(ctx: CheckContext, vm: string): Promise<string> {
  return String((await props(ctx, vm).get('ip')).value);
}

/** Throughput of `PAYLOAD_MIB` sent from `vm` to the probe server, MB/s as the server counted it. */
async function throughput(ctx: CheckContext, vm: string, server: ProbeServer): Promise<number> {
  const before = server.connections.length;
  await bash(ctx, vm, sendScript(HOST, server.port, PAYLOAD_MIB * 1024 * 1024));
  const deadline = performance.now() + 10_000;
  while (server.connections.length === before && performance.now() < deadline) await sleep(50);
  const conn = server.connections[server.connections.length - 1];
  if (!conn || server.connections.length === before) fail(`the server saw no connection from ${vm}`);
  expectEqual(conn.bytes, PAYLOAD_MIB * 1024 * 1024, `bytes the server received from ${vm}`);
  return Math.round((conn.bytes / 1e6 / (conn.ms / 1000)) * 100) / 100;
}

/** Mean time for `vm` to open (and close) a TCP connection to the probe server, ms, measured in the guest. */
async function connectMs(ctx: CheckContext, vm: string, server: ProbeServer): Promise<number> {
  const out = await bash(ctx, vm, connectScript(HOST, server.port, CONNECTS));
  const us = Number(out.trim());
  if (!Number.isFinite(us) || out.trim() === '') fail(`connect timing from ${vm}: ${JSON.stringify(out)}`);
  return Math.round(us / 10) / 100;
}

const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;

export const networkChecks: readonly Check[] = [
  net(
    'setup',
    async (ctx) => {
      const kinds = ctx.backend.capabilities.guestImages;
      // Its image boots as a KVM guest, a Xen domU or a container's root (as guest-template.ts's qubes).
      if (!TEMPLATE_GUEST_KINDS.some((kind) => kinds.includes(kind))) {
        missing = `the Debian template is built for ${TEMPLATE_GUEST_KINDS.join(', ')} only; this backend boots ${kinds.join(', ') || 'none'}`;
        throw new Unsupported('suite', missing);
      }
      const names = new Set((await ctx.client.vms.list()).map((vm) => vm.name));
      if (!names.has('debian-12')) {
        const cached = await cachedTemplateBuild();
        if (cached !== undefined) {
          missing = cached;
          throw new Unsupported('suite', missing);
        }
        await installDebianTemplate(ctx.socket);
      }
      // What the backend boots (PV on Xen nested); the qubes below inherit it from their template.
      if (ctx.virtMode) await props(ctx, 'debian-12').set('virt_mode', ctx.virtMode);
      for (const name of QUBES) {
        if (!names.has(name))
          await ctx.client.vms.create({ klass: 'AppVM', name, label: 'red', template: 'debian-12' });
        await props(ctx, name).set('memory', '400');
        await props(ctx, name).set('maxmem', '0');
        await props(ctx, name).set('vcpus', '1');
        // A Debian qube under TCG on a busy host can take minutes before its agent answers.
        await props(ctx, name).set('qrexec_timeout', '600');
      }
      for (const name of [SYS_NET, SYS_FIREWALL]) await props(ctx, name).set('provides_network', 'True');
      await props(ctx, SYS_NET).set('netvm', '');
      await props(ctx, SYS_FIREWALL).set('netvm', SYS_NET);
      await props(ctx, APP).set('netvm', SYS_FIREWALL);
      await props(ctx, APP2).set('netvm', SYS_FIREWALL);
      servers = { probe: await startProbeServer(), other: await startProbeServer() };
      missing = undefined;
    },
    INSTALL_MS,
  ),
  // Each start is a check of its own: a boot and the wait for the network each take most of a check's time.
  ...CHAIN.flatMap(({ vm, start, reach, via }) => [
    net(
      start,
      async (ctx) => {
        ready();
        await ctx.client.vms.start(vm);
      },
      START_MS,
    ),
    net(reach, async (ctx) => {
      const { probe } = ready();
      const what = `${vm} does not reach the host's server through ${via.join(' and ') || 'its uplink'}`;
      await until(ctx, vm, HOST, probe.port, true, what, via);
    }),
  ]),
  net('netvm-in-use-not-shut-down', async (ctx) => {
    ready();
    try {
      await ctx.client.vms.shutdown(SYS_FIREWALL, { wait: true });
    } catch (err) {
      if (!(err instanceof QubesError)) throw err;
      expectEqual(err.type, 'QubesVMInUseError', 'the error shutting down a netvm with a running client');
      expectEqual(err.message, `There are other VMs connected to this VM: ${APP}`, 'its message');
      return;
    }
    fail(`${SYS_FIREWALL} was shut down while ${APP} ran behind it`);
  }),
  net('throughput-and-latency', async (ctx) => {
    const { probe } = ready();
    const direct = await throughput(ctx, SYS_NET, probe);
    const one = await throughput(ctx, SYS_FIREWALL, probe);
    const two = await throughput(ctx, APP, probe);
    const directMs = await connectMs(ctx, SYS_NET, probe);
    const oneMs = await connectMs(ctx, SYS_FIREWALL, probe);
    const twoMs = await connectMs(ctx, APP, probe);
    Object.assign(ctx.metrics, {
      network_mb_per_s: two,
      network_connect_ms: twoMs,
      network_direct_mb_per_s: direct,
      network_one_netvm_mb_per_s: one,
      network_direct_connect_ms: directMs,
      network_one_netvm_connect_ms: oneMs,
      network_one_netvm_vs_direct_throughput_ratio: ratio(one, direct),
      network_two_netvms_vs_direct_throughput_ratio: ratio(two, direct),
      network_one_netvm_vs_direct_latency_ratio: ratio(oneMs, directMs),
      network_two_netvms_vs_direct_latency_ratio: ratio(twoMs, directMs),
    });
  }),
  net('firewall-drop', async (ctx) => {
    const { probe } = ready();
    await ctx.client.firewall.set(APP, [`action=drop dsthost=${HOST}`, 'action=accept']);
    await until(ctx, APP, HOST, probe.port, false, `a drop rule for ${HOST} does not block ${APP}`);
    // Enforced in the netvm for this qube only: the netvm itself still reaches the host.
    if (!(await reaches(ctx, SYS_FIREWALL, HOST, probe.port)))
      fail(`${APP}'s rule blocked ${SYS_FIREWALL} too`);
  }),
  net('firewall-accept-exactly', async (ctx) => {
    const { probe, other } = ready();
    await ctx.client.firewall.set(APP, [
      `action=accept dsthost=${HOST} proto=tcp dstports=${probe.port}-${probe.port}`,
      'action=drop',
    ]);
    await until(
      ctx,
      APP,
      HOST,
      probe.port,
      true,
      `an accept rule for ${HOST}:${probe.port} does not let ${APP} through`,
    );
    if (await reaches(ctx, APP, HOST, other.port))
      fail(`${APP} reaches port ${other.port}, which no rule accepts`);
    await ctx.client.firewall.set(APP, ['action=accept']);
    await until(
      ctx,
      APP,
      HOST,
      other.port,
      true,
      `${APP} does not reach port ${other.port} once every rule is gone`,
    );
  }),
  net('dns', async (ctx) => {
    ready();
    let dns: DnsServer;
    try {
      dns = await startDnsServer(DNS_NAME, DNS_ADDRESS);
    } catch (err) {
      throw new Unsupported(
        'suite',
        `the suite's DNS server cannot listen on 127.0.0.1:53: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    try {
      // sys-net's resolver is the host's loopback, where the suite's server answers.
      await bash(ctx, SYS_NET, `echo 'nameserver ${HOST}' | sudo tee /etc/resolv.conf >/dev/null`);
      const deadline = performance.now() + SETTLE_MS;
      let answer = '';
      while (!answer.includes(DNS_ADDRESS)) {
        if (performance.now() > deadline)
          fail(
            `${APP} did not resolve ${DNS_NAME} through 10.139.1.1 (last: ${JSON.stringify(answer)}; the server saw ${JSON.stringify(dns.queries)})`,
          );
        answer = await bash(
          ctx,
          APP,
          `grep -q '^nameserver 10.139.1.1' /etc/resolv.conf || { echo "resolv.conf: $(cat /etc/resolv.conf)"; exit 0; }; timeout 10 getent ahostsv4 ${DNS_NAME}; true`,
        );
        if (!answer.includes(DNS_ADDRESS)) await sleep(2000);
      }
      if (!dns.queries.some((q) => q.endsWith(DNS_NAME)))
        fail(`the answer did not come from the suite's server: ${answer}`);
    } finally {
      await dns.close();
    }
  }),
  net('spoofed-source-dropped', async (ctx) => {
    const { probe } = ready();
    const before = probe.accepted();
    const out = await bash(
      ctx,
      APP,
      [
        `dev=$(ip -o route get ${HOST} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')`,
        `via=$(ip -o route get ${HOST} | sed -n 's/.* via \\([^ ]*\\).*/\\1/p')`,
        `sudo ip addr add ${SPOOFED}/32 dev "$dev"`,
        `sudo ip route add ${HOST}/32 via "$via" dev "$dev" src ${SPOOFED}`,
        `timeout 8 bash -c 'exec 3<>/dev/tcp/${HOST}/${probe.port} && head -c ${PROBE_TOKEN.length} <&3' 2>/dev/null`,
        `echo "exit=$?"`,
        `sudo ip route del ${HOST}/32; sudo ip addr del ${SPOOFED}/32 dev "$dev"`,
      ].join('\n'),
    );
    if (out.includes(PROBE_TOKEN.trim())) fail(`a connection from spoofed ${SPOOFED} got through: ${out}`);
    expectEqual(probe.accepted(), before, 'connections the server accepted from the spoofed address');
    await until(
      ctx,
      APP,
      HOST,
      probe.port,
      true,
      `${APP} does not reach the host again with its own address`,
    );
  }),
  net(
    'start-app2',
    async (ctx) => {
      ready();
      await ctx.client.vms.start(APP2);
    },
    START_MS,
  ),
  net('clients-isolated', async (ctx) => {
    ready();
    const peer = await ipOf(ctx, APP2);
    await bash(ctx, APP2, listenerScript(PEER_PORT));
    // The listener is up: APP2 reaches it at its own address.
    await until(
      ctx,
      APP2,
      peer,
      PEER_PORT,
      true,
      `${APP2}'s own listener on ${peer}:${PEER_PORT} does not answer`,
    );
    if (await reaches(ctx, APP, peer, PEER_PORT))
      fail(`${APP} reaches ${APP2} (${peer}) behind the same netvm`);
  }),
  // Upstream's net.fake-ip / net.fake-gateway, set while the qube runs: it is shown those addresses
  // and no real one, and still reaches the host through its netvms (which see its real address).
  net('visible-addresses', async (ctx) => {
    const { probe } = ready();
    const real = await ipOf(ctx, APP2);
    // The netvm rewrites addresses with nftables; a kernel may refuse that in a container's user
    // namespace, and its network daemon then serves such a client no network (fails closed).
    const refused = await bash(
      ctx,
      SYS_FIREWALL,
      `printf 'table ip probe {\n chain c {\n  type filter hook prerouting priority -310;\n  ip saddr 192.0.2.1 ip saddr set 192.0.2.2\n }\n}\n' | sudo nft -c -f - 2>&1 >/dev/null; true`,
    );
    if (refused.trim() !== '')
      throw new Unsupported(
        'suite',
        `${SYS_FIREWALL}'s kernel refuses nftables address rewriting, which showing a client other addresses needs: ${refused.trim().split('\n')[0]}`,
      );
    await ctx.client.features.set(APP2, 'net.fake-ip', VISIBLE.ip);
    await ctx.client.features.set(APP2, 'net.fake-gateway', VISIBLE.gateway);
    const shown = async (): Promise<string> =>
      bash(ctx, APP2, 'ip -4 -o address show scope global; ip -4 route show');
    try {
      const deadline = performance.now() + SETTLE_MS;
      while (!(await shown()).includes(`inet ${VISIBLE.ip}/32`)) {
        if (performance.now() > deadline) fail(`${APP2} was not given ${VISIBLE.ip}: ${await shown()}`);
        await sleep(2000);
      }
      await until(ctx, APP2, HOST, probe.port, true, `${APP2} shown ${VISIBLE.ip} does not reach the host`, [
        SYS_FIREWALL,
      ]);
      const seen = await shown();
      if (!seen.includes(`default via ${VISIBLE.gateway}`) || seen.includes(real) || /10\.137\./.test(seen))
        fail(`${APP2} sees other addresses than ${VISIBLE.ip} via ${VISIBLE.gateway}: ${seen}`);
    } finally {
      await ctx.client.features.remove(APP2, 'net.fake-ip');
      await ctx.client.features.remove(APP2, 'net.fake-gateway');
    }
    await until(ctx, APP2, HOST, probe.port, true, `${APP2} does not reach the host again as ${real}`, [
      SYS_FIREWALL,
    ]);
  }),
  net('netvm-none', async (ctx) => {
    const { probe } = ready();
    await props(ctx, APP).set('netvm', '');
    await until(ctx, APP, HOST, probe.port, false, `${APP} still reaches the host with netvm set to none`);
  }),
  net('netvm-changed-live', async (ctx) => {
    const { probe } = ready();
    await props(ctx, APP).set('netvm', SYS_NET);
    await until(
      ctx,
      APP,
      HOST,
      probe.port,
      true,
      `${APP} does not reach the host once moved to ${SYS_NET} while running`,
      [SYS_NET],
    );
    await props(ctx, APP).set('netvm', SYS_FIREWALL);
    await until(
      ctx,
      APP,
      HOST,
      probe.port,
      true,
      `${APP} does not reach the host once moved back to ${SYS_FIREWALL}`,
      [SYS_FIREWALL, SYS_NET],
    );
  }),
  net('teardown', async (ctx) => {
    if (missing !== undefined) throw new Unsupported('suite', missing);
    for (const name of [APP2, APP, SYS_FIREWALL, SYS_NET]) {
      const state = await ctx.client.vms.currentState(name);
      if (state.powerState !== 'Halted') await ctx.client.vms.kill(name);
    }
    await servers?.probe.close();
    await servers?.other.close();
    servers = undefined;
  }),
];
