import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { QubesError } from '@odyssey/client';
import type { IsolationClass } from '@odyssey/hal';

import { expectEqual, fail, Unsupported, type Check, type CheckContext } from '../check.js';
import { cachedTemplateBuild, installDebianTemplate } from '../debian-template.js';
import type { Guests } from '../guests.js';
import { hostProcesses, type HostProcess } from '../host-processes.js';
import { QUBES } from '../qubes.js';
import { cleanEnv, run } from '../spawn.js';
import { guestsOf } from './guest.js';
import { TEMPLATE_GUEST_KINDS } from './guest-template.js';

/*
 * How far a domain is kept from dom0 and from the other domains, probed from both sides: conf-peer
 * is the domain under test, conf-mgmt the other domain, the suite itself dom0. What a check can
 * mean depends on the isolation class the backend declares:
 *
 * - process: a domain is a dom0 process with dom0's uid, files, process table and sockets; none of
 *   these separations is offered, and every check says so (unsupported, declared by the class).
 * - container: a domain's processes are host processes in namespaces of their own; dom0 finds
 *   them by a marker in their argv and reads their uids and pid namespace from its own /proc.
 * - hosted-vm: a domain's processes run on its own kernel and no dom0 /proc lists them; what runs
 *   on the host is the VMM's process (QEMU, found by libvirt's `-name guest=NAME`), whose uid is
 *   the "host uid". The in-domain probes (process table, files, sockets, memory, fork bomb) run as
 *   they do in a container: a VM passes the visibility ones by construction, and the checks show it.
 * - bare-metal-vm: as hosted-vm, but no dom0 process runs the domain at all (the hypervisor
 *   does), so only the uid check has nothing to look at.
 *
 * Every check runs twice: on the suite's own qubes (whatever guest image the backend boots), and as
 * `isolation.debian.*` with a qube of the Debian template as the domain under test, probing as its
 * root (qubes.VMRootShell): a root that boots systemd may be given more (an lxc container gets
 * capabilities in its own user namespace), and the promises must hold for it too.
 */

const category = 'isolation';

/**
 * The qubes one run of the checks probes: `peer` the domain under test, `other` the domain it must
 * not reach, `isolated` the one the memory and fork-bomb checks load (its memory its limit).
 */
interface Subject {
  /** Between `isolation.` and the check's name in its id. */
  readonly idPrefix: string;
  /** Before the name of each metric its checks record. */
  readonly metricPrefix: string;
  readonly peer: string;
  readonly other: string;
  readonly isolated: string;
  /** The idle domain whose processes' RSS the uid check records (`idle_domain_rss_mib`). */
  readonly measured: string;
  /** Its check's time limit, when its first check may import and boot a template. */
  readonly timeoutMs?: number;
  /** The service a probe script runs under in `vm` (a shell reading stdin). */
  shellOf(vm: string): string;
  /** Readies `peer` and `isolated` (the suite's lifecycle steps start `other`), or says why it cannot (Unsupported). */
  ready(ctx: CheckContext): Promise<void>;
  /** Readies `isolated`, running, for the checks that load it. */
  readyIsolated(ctx: CheckContext): Promise<void>;
}

const isolation = (
  subject: Subject,
  id: string,
  run: (ctx: CheckContext, s: Subject) => Promise<void>,
): Check => ({
  id: `isolation.${subject.idPrefix}${id}`,
  category,
  run: (ctx) => run(ctx, subject),
  ...(subject.timeoutMs === undefined ? {} : { timeoutMs: subject.timeoutMs }),
});

/**
 * The declared class, or, when this check's separation is not what that class offers, the
 * reason (the class's, as each check words it) it is not attempted.
 */
function classOf(ctx: CheckContext, notOffered: Partial<Record<IsolationClass, string>>): IsolationClass {
  const declared = ctx.backend.capabilities.isolation;
  const why = notOffered[declared];
  if (why !== undefined) throw new Unsupported('declared', `isolation class ${declared}: ${why}`);
  return declared;
}

/** Runs `script` in `vm`'s shell (the subject's service for it) and returns what it printed; a failed shell fails the check. */
async function inDomain(guests: Guests, s: Subject, vm: string, script: string): Promise<string> {
  const done = await guests.dom0Call(vm, s.shellOf(vm), `${script}\nexit 0\n`);
  if (done.code !== 0) fail(`${s.shellOf(vm)} in ${vm} exited ${done.code}: ${done.stderr}`);
  return done.stdout;
}

/** A regular expression for `id` that does not match the grep looking for it (its own argv holds the pattern). */
const grepPattern = (id: string): string => `[${id.slice(0, 1)}]${id.slice(1)}`;
const newId = (who: string): string => `odyssey-isolation-${who}-${randomBytes(4).toString('hex')}`;

/**
 * Looks for processes whose argv holds one of `ids` inside a domain: prints `seen N` for the Nth.
 * The script names no id literally: the domain's shell may hold it in its own argv. `-q` keeps a
 * match a match when another process ends mid-scan (grep exits 2 on the vanished file otherwise).
 */
const seenScript = (ids: readonly string[]): string =>
  ids.map((id, n) => `grep -qs '${grepPattern(id)}' /proc/[0-9]*/cmdline && echo 'seen ${n}'`).join('\n');

interface Marker {
  readonly id: string;
  stop(): Promise<void>;
}

/** How many times, 0.2 s apart, a domain looks in its own /proc for a marker just started. */
const MARKER_LOOKS = 150;

/**
 * Waits inside the domain, in one call, until `id`'s marker shows in its /proc: a qrexec call
 * per look from dom0 costs seconds each under nested TCG, where the marker's own call often
 * arrives after the first look.
 */
const waitSeenScript = (id: string): string =>
  `i=0; while [ $i -lt ${MARKER_LOOKS} ]; do ${seenScript([id])} && break; sleep 0.2; i=$((i + 1)); done`;

/**
 * A long-running shell inside `vm` whose argv carries a unique id, for finding the domain's
 * processes from outside; it is there (seen by the domain itself) when this resolves, and ends
 * when `stop` is called.
 */
async function startMarker(guests: Guests, s: Subject, vm: string): Promise<Marker> {
  const id = newId(vm);
  const running = guests.dom0Call(
    vm,
    s.shellOf(vm),
    `sh -c 'while [ ! -e /tmp/${id}.stop ]; do sleep 1; done' ${id}\nexit 0\n`,
  );
  const stop = async (): Promise<void> => {
    await guests.dom0Call(vm, s.shellOf(vm), `touch /tmp/${id}.stop\nexit 0\n`);
    await running;
  };
  if ((await inDomain(guests, s, vm, waitSeenScript(id))).includes('seen 0')) return { id, stop };
  await stop();
  return fail(`the marker process ${id} never showed in ${vm}'s own /proc`);
}

async function withMarkers<T>(
  guests: Guests,
  s: Subject,
  vms: readonly string[],
  body: (markers: readonly Marker[]) => Promise<T>,
): Promise<T> {
  const markers: Marker[] = [];
  try {
    for (const vm of vms) markers.push(await startMarker(guests, s, vm));
    return await body(markers);
  } finally {
    for (const marker of markers) await marker.stop();
  }
}

/** The processes in `vm`'s pid namespace, found through the marker in it. */
function domainProcesses(vm: string, marker: Marker, processes: readonly HostProcess[]): HostProcess[] {
  const marked = processes.find((p) => p.argv.includes(marker.id));
  if (!marked) return fail(`dom0's /proc lists no process of ${vm} (marker ${marker.id})`);
  return processes.filter((p) => p.pidNamespace === marked.pidNamespace);
}

const uidsOf = (processes: readonly HostProcess[]): Set<number> => new Set(processes.flatMap((p) => p.uids));
const rssMiB = (processes: readonly HostProcess[]): number =>
  Math.round(processes.reduce((sum, p) => sum + p.rssKiB, 0) / 1024);

const intValue = async (ctx: CheckContext, vm: string, property: string): Promise<number> =>
  Number((await ctx.client.call('admin.vm.property.Get', vm, property)).toString().split(' ').pop());

/** The directory odysseyd keeps its state in: the file pool whose dir_path holds qubes.xml. */
async function stateDir(ctx: CheckContext): Promise<string> {
  const pools = (await ctx.client.call('admin.pool.List', 'dom0')).toString().split('\n').filter(Boolean);
  for (const pool of pools) {
    const info = (await ctx.client.call('admin.pool.Info', 'dom0', pool)).toString();
    const dir = /^dir_path=(.*)$/m.exec(info)?.[1];
    if (dir && (await lstat(join(dir, 'qubes.xml')).catch(() => undefined))) return dir;
  }
  return fail('no pool of odysseyd has a dir_path holding qubes.xml');
}

/** Files (and sockets) under `dir` whose path names `vm`, depth-first, at most `limit` of them. */
async function pathsNaming(dir: string, vm: string, kind: 'file' | 'socket', limit = 20): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (found.length >= limit) return;
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (path.includes(vm) && (kind === 'socket' ? entry.isSocket() : entry.isFile())) found.push(path);
    }
  };
  await walk(dir);
  return found;
}

/** A node program run in the domain: tries to connect to each UNIX socket path, prints each it reached. */
const CONNECT_PROBE =
  'const net=require(`node:net`);let left=process.argv.length-1;const done=()=>{if(--left===0)process.exit(0)};' +
  'for(const p of process.argv.slice(1)){const s=net.connect(p);s.setTimeout(3000,()=>{s.destroy();done()});' +
  's.on(`connect`,()=>{console.log(`connected ${p}`);s.destroy();done()});s.on(`error`,()=>done())}';

const shellWord = (word: string): string => `'${word.replaceAll("'", `'\\''`)}'`;

/** Allocates and touches `$1` MiB in 16 MiB pieces, then says how much: node is in every guest image. */
const ALLOCATE =
  'const want=Number(process.argv[1]);const kept=[];let mib=0;' +
  'while(mib<want){kept.push(Buffer.alloc(16*1048576,1));mib+=16}console.log(`allocated ${mib}`)';
const allocateScript = (mib: number): string =>
  // The allocator asks to be the OOM killer's first choice, so a limit takes it and not the agent.
  `echo 1000 >/proc/self/oom_score_adj 2>/dev/null\nnode -e ${shellWord(ALLOCATE)} ${mib}\necho "exit $?"`;

/**
 * The qube the memory and fork-bomb checks load on the suite's qubes: `memory` without balancing
 * (maxmem 0), so its limit is `memory` on every backend, and the qubes other checks use stay as they were.
 */
const ISOLATED = 'conf-isolated';

/** Creates `name` from `template` the first time (maxmem 0, `props` set), and starts it when it is not running. */
async function startQube(
  ctx: CheckContext,
  name: string,
  template: string,
  props: Readonly<Record<string, string>>,
): Promise<void> {
  const listed = (await ctx.client.call('admin.vm.List', 'dom0')).toString();
  if (!listed.split('\n').some((line) => line.startsWith(`${name} `))) {
    await ctx.client.call('admin.vm.Create.AppVM', 'dom0', template, `name=${name} label=red`);
    await ctx.client.call('admin.vm.property.Set', name, 'maxmem', '0');
    for (const [prop, value] of Object.entries(props))
      await ctx.client.call('admin.vm.property.Set', name, prop, value);
  }
  if ((await ctx.client.vms.currentState(name)).powerState !== 'Running') await ctx.client.vms.start(name);
}

/** The suite's own qubes (lifecycle's), each probed through its qubes.VMShell. */
const SUITE_QUBES: Subject = {
  idPrefix: '',
  metricPrefix: '',
  peer: QUBES.peer,
  other: QUBES.mgmt,
  isolated: ISOLATED,
  measured: QUBES.mgmt,
  shellOf: () => 'qubes.VMShell',
  ready: async () => undefined,
  readyIsolated: (ctx) => startQube(ctx, ISOLATED, QUBES.template, {}),
};

const DEBIAN_TEMPLATE = 'debian-12';
/** The Debian qube under test: also the one loaded, so its limits are what a user's qube of it gets. */
const DEBIAN_QUBE = 'conf-iso-debian';
/** The guest category's size for its Debian qube. */
const DEBIAN_QUBE_PROPS = { memory: '512', vcpus: '1', qrexec_timeout: '600' } as const;
/** Importing the template (2 GiB through the admin API) and booting systemd, as guest-template.ts allows. */
const DEBIAN_STEP_MS = 600_000;

/** Why no qube of the Debian template can run here, once known (the same for every check). */
let noDebian: string | undefined;

async function readyDebian(ctx: CheckContext): Promise<void> {
  if (noDebian !== undefined) throw new Unsupported('suite', noDebian);
  // What a root that boots systemd changes is what the host grants it: on an OS container, more
  // capabilities in its own user namespace. A VM's guest OS runs on its own kernel, and the host
  // separates it the same whatever it boots: the checks above cover that (and a Debian boot under
  // TCG costs minutes).
  classOf(ctx, {
    'hosted-vm': "the guest's OS does not change what separates a VM: the checks on conf-peer cover it",
    'bare-metal-vm': "the guest's OS does not change what separates a VM: the checks on conf-peer cover it",
  });
  const kinds = ctx.backend.capabilities.guestImages;
  if (!TEMPLATE_GUEST_KINDS.some((kind) => kinds.includes(kind))) {
    noDebian =
      `the Debian template is built for ${TEMPLATE_GUEST_KINDS.join(', ')} only; ` +
      `this backend boots ${kinds.join(', ') || 'no guest images'}`;
    throw new Unsupported('suite', noDebian);
  }
  const listed = (await ctx.client.call('admin.vm.List', 'dom0')).toString();
  // The guest category, run before, may have installed it.
  if (!listed.split('\n').some((line) => line.startsWith(`${DEBIAN_TEMPLATE} `))) {
    const cached = await cachedTemplateBuild();
    if (cached !== undefined) {
      noDebian = `no cached build of the Debian template: ${cached}`;
      throw new Unsupported('suite', noDebian);
    }
    await installDebianTemplate(ctx.socket);
    if (ctx.virtMode) await ctx.client.vmProperties(DEBIAN_TEMPLATE).set('virt_mode', ctx.virtMode);
  }
  await startQube(ctx, DEBIAN_QUBE, DEBIAN_TEMPLATE, DEBIAN_QUBE_PROPS);
  // The probes are meant to run as the qube's root: a shell that is not would probe less.
  const uid = await inDomain(guestsOf(ctx), DEBIAN_QUBES, DEBIAN_QUBE, 'id -u');
  expectEqual(uid.trim(), '0', `the uid qubes.VMRootShell runs as in ${DEBIAN_QUBE}`);
}

/** A qube of the Debian template under test, probed as its root (the most a process in it can be). */
const DEBIAN_QUBES: Subject = {
  idPrefix: 'debian.',
  metricPrefix: 'debian_',
  peer: DEBIAN_QUBE,
  other: QUBES.mgmt,
  isolated: DEBIAN_QUBE,
  measured: DEBIAN_QUBE,
  timeoutMs: DEBIAN_STEP_MS,
  shellOf: (vm) => (vm === DEBIAN_QUBE ? 'qubes.VMRootShell' : 'qubes.VMShell'),
  ready: readyDebian,
  readyIsolated: readyDebian,
};

/** How long a probe of dom0 or of the other domain may take while the fork bomb runs. */
const RESPONSIVE_MS = 60_000;
/** How long the bomb runs before the probes. */
const BOMB_RAMP_MS = 5_000;

async function within<T>(what: string, work: Promise<T>): Promise<{ value: T; ms: number }> {
  const begin = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not answer within ${RESPONSIVE_MS} ms`)),
      RESPONSIVE_MS,
    );
  });
  try {
    const value = await Promise.race([work, late]);
    return { value, ms: Math.round(performance.now() - begin) };
  } finally {
    clearTimeout(timer);
  }
}

const checksOn = (s: Subject): Check[] => [
  isolation(s, 'unprivileged-host-uid', async (ctx) => {
    const declared = classOf(ctx, {
      process: "a domain is a dom0 process, run as dom0's own uid",
      'bare-metal-vm':
        'a domain runs on its own kernel under the hypervisor, not as a dom0 process: no dom0 uid runs it',
    });
    await s.ready(ctx);
    const own = process.getuid?.() ?? 0;
    const privileged = (uids: Set<number>) => [...uids].filter((u) => u === 0 || u === own);
    if (declared === 'hosted-vm') {
      // The guest's own processes are its kernel's; on the host, the domain is its VMM process:
      // named by libvirt's `-name guest=NAME`, and opening this daemon's volumes (another run's
      // guest of the same name does not).
      const state = await stateDir(ctx);
      const processes = await hostProcesses();
      for (const vm of [s.peer, s.other]) {
        const vmm = processes.filter(
          (p) =>
            p.argv.some((a) => a === `guest=${vm}` || a.startsWith(`guest=${vm},`)) &&
            p.argv.some((a) => a.includes(state)),
        );
        if (vmm.length === 0)
          fail(`no host process is named guest=${vm} (libvirt's -name for the VMM) with volumes in ${state}`);
        const bad = privileged(uidsOf(vmm));
        if (bad.length > 0)
          fail(`the VMM process of ${vm} (pid ${vmm[0]?.pid}) runs as host uid ${bad.join(', ')}`);
        // What an idle domain costs the host: its VMM process, guest memory it touched included.
        if (vm === s.measured) ctx.metrics[s.metricPrefix + 'idle_domain_rss_mib'] = rssMiB(vmm);
      }
      return;
    }
    await withMarkers(guestsOf(ctx), s, [s.peer, s.other], async ([peer, mgmt]) => {
      const processes = await hostProcesses();
      const mgmtProcesses = domainProcesses(s.other, mgmt as Marker, processes);
      const peerProcesses = domainProcesses(s.peer, peer as Marker, processes);
      const peerUids = uidsOf(peerProcesses);
      const mgmtUids = uidsOf(mgmtProcesses);
      // What an idle domain costs the host: every process in its pid namespace (the backend's own
      // host-side helpers, such as libvirt_lxc, are outside it and not counted).
      const measured = s.measured === s.peer ? peerProcesses : mgmtProcesses;
      ctx.metrics[s.metricPrefix + 'idle_domain_rss_mib'] = rssMiB(measured);
      for (const [vm, uids] of [
        [s.peer, peerUids],
        [s.other, mgmtUids],
      ] as const) {
        const bad = privileged(uids);
        if (bad.length > 0) fail(`processes of ${vm} run as host uid ${bad.join(', ')} (dom0's own or root)`);
      }
      const shared = [...peerUids].filter((u) => mgmtUids.has(u));
      if (shared.length > 0) fail(`${s.peer} and ${s.other} share host uids ${shared.join(', ')}`);
    });
  }),

  isolation(s, 'sees-only-own-processes', async (ctx) => {
    classOf(ctx, { process: "a domain is a dom0 process and sees dom0's whole process table" });
    await s.ready(ctx);
    const guests = guestsOf(ctx);
    const dom0Id = newId('dom0');
    const dom0Marker = spawn('sh', ['-c', 'sleep 300; :', dom0Id], { stdio: 'ignore', env: cleanEnv() });
    try {
      await withMarkers(guests, s, [s.peer, s.other], async ([peer, mgmt]) => {
        const ids = [(peer as Marker).id, (mgmt as Marker).id, dom0Id];
        const seen = (await inDomain(guests, s, s.peer, seenScript(ids))).trim().split('\n').filter(Boolean);
        // Its own marker is the control: the probe does find processes it may see.
        const whose = seen.map((line) => [s.peer, s.other, 'dom0'][Number(line.split(' ')[1])]);
        expectEqual(whose, [s.peer], `whose marker processes ${s.peer} sees in its /proc`);
      });
    } finally {
      dom0Marker.kill('SIGKILL');
    }
  }),

  isolation(s, 'no-dom0-or-other-domain-files', async (ctx) => {
    classOf(ctx, { process: "a domain is a dom0 process with dom0's uid and file system" });
    await s.ready(ctx);
    const guests = guestsOf(ctx);
    const state = await stateDir(ctx);
    const otherVolumes = await pathsNaming(join(state, 'appvms'), s.other, 'file');
    if (otherVolumes.length === 0) fail(`dom0 finds no file of ${s.other} under ${state}/appvms to try`);
    const secret = newId('secret');
    await inDomain(guests, s, s.other, `echo ${secret} >/tmp/${secret}`);
    const mine = await inDomain(guests, s, s.other, `cat /tmp/${secret}`);
    expectEqual(mine.trim(), secret, `${s.other} reading its own /tmp/${secret}`);
    const targets = [join(state, 'qubes.xml'), ...otherVolumes, `/tmp/${secret}`];
    const probe = [
      `ls ${shellWord(state)} >/dev/null 2>&1 && echo 'listed ${state}'`,
      ...targets.map((t) => `head -c 1 ${shellWord(t)} >/dev/null 2>&1 && echo 'read ${t}'`),
    ].join('\n');
    const reached = (await inDomain(guests, s, s.peer, probe)).trim();
    expectEqual(reached, '', `what ${s.peer} read of dom0's state dir and ${s.other}'s files`);
  }),

  isolation(s, 'no-other-domain-vchan', async (ctx) => {
    classOf(ctx, { process: "every domain's vchan sockets are in one dom0 directory open to all of them" });
    await s.ready(ctx);
    const guests = guestsOf(ctx);
    // dom0's ends of conf-mgmt's vchans and agent socket: what a domain would connect to to reach it.
    const sockets = await pathsNaming(join(await stateDir(ctx), 'run'), s.other, 'socket');
    if (sockets.length === 0) fail(`dom0 finds no socket of ${s.other} under its state dir to try`);
    const connected = await inDomain(
      guests,
      s,
      s.peer,
      `node -e ${shellWord(CONNECT_PROBE)} ${sockets.map(shellWord).join(' ')}\n` +
        // And nothing in its own file system is a socket of the other domain.
        `find / \\( -path /proc -o -path /sys \\) -prune -o -type s -name '*${s.other}*' -print 2>/dev/null`,
    );
    expectEqual(connected.trim(), '', `sockets of ${s.other} that ${s.peer} reached`);
  }),

  isolation(s, 'memory-limit', async (ctx) => {
    classOf(ctx, { process: 'a domain is a dom0 process with no memory limit of its own' });
    await s.ready(ctx);
    const guests = guestsOf(ctx);
    await s.readyIsolated(ctx);
    const memory = await intValue(ctx, s.isolated, 'memory');
    const small = await inDomain(guests, s, s.isolated, allocateScript(64));
    expectEqual(small.trim(), 'allocated 64\nexit 0', `allocating 64 MiB in ${s.isolated} (the control)`);
    const over = memory + 256;
    const large = (await inDomain(guests, s, s.isolated, allocateScript(over))).trim();
    if (large.includes('allocated'))
      fail(`${s.isolated} allocated ${over} MiB, over its memory of ${memory} MiB`);
    if (!/^exit [1-9]\d*$/m.test(large))
      fail(`the allocator of ${over} MiB in ${s.isolated} ended so: ${large}`);
  }),

  isolation(s, 'fork-bomb-contained', async (ctx) => {
    classOf(ctx, { process: 'a domain is a dom0 process with no process or CPU limit of its own' });
    await s.ready(ctx);
    const guests = guestsOf(ctx);
    await s.readyIsolated(ctx);
    await inDomain(guests, s, s.other, 'echo ready');
    // The call never ends by itself: the bomb's shell is its service, gone with the domain.
    const bomb = guests
      .dom0Call(s.isolated, s.shellOf(s.isolated), 'b() { b | b & }\nb\n')
      .catch(() => undefined);
    await sleep(BOMB_RAMP_MS);
    const host = await within(
      'dom0 (a new process and admin.vm.List)',
      Promise.all([run('/bin/true', [], cleanEnv()), ctx.client.call('admin.vm.List', 'dom0')]),
    );
    expectEqual(host.value[0].code, 0, 'exit code of /bin/true in dom0 during the fork bomb');
    const other = await within(`${s.other}'s qrexec`, inDomain(guests, s, s.other, 'echo alive'));
    expectEqual(other.value.trim(), 'alive', `${s.other}'s answer during the fork bomb`);
    ctx.metrics[s.metricPrefix + 'forkbomb_dom0_response_ms'] = host.ms;
    ctx.metrics[s.metricPrefix + 'forkbomb_other_domain_response_ms'] = other.ms;
    // The domain may have died of its own bomb (its init killed inside its limits): contained all the same.
    const killed = ctx.client.vms.kill(s.isolated).catch((err: unknown) => {
      if (!(err instanceof QubesError && err.type === 'QubesVMNotStartedError')) throw err;
    });
    await within(`admin.vm.Kill of ${s.isolated}`, killed);
    await bomb;
    expectEqual(
      (await ctx.client.vms.currentState(s.isolated)).powerState,
      'Halted',
      `${s.isolated} after Kill`,
    );
    expectEqual(
      (await ctx.client.vms.currentState(s.other)).powerState,
      'Running',
      `${s.other} after the bomb`,
    );
  }),
];

/** The suite's qubes first, then the Debian ones (each run's fork bomb last: it leaves its qube killed). */
export const isolationChecks: readonly Check[] = [...checksOn(SUITE_QUBES), ...checksOn(DEBIAN_QUBES)];
