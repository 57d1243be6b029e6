import { execFile } from 'node:child_process';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { VmmError, backendIfname, backendMac, type NetworkLink } from '@odyssey/hal';

const run = promisify(execFile);

/** The client's side of its link, as a Linux guest names its first NIC. */
export const FRONTEND_IFNAME = 'eth0';
/** iproute2 answers in milliseconds; a hung one must not hold core's link queue for ever. */
const IP_TIMEOUT_MS = 10_000;
/** `ip -j link show` of a container: a few interfaces, some hundred bytes each. */
const IP_MAX_OUTPUT = 1024 * 1024;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

interface IpLink {
  readonly ifindex: number;
  readonly ifname: string;
  readonly address?: string;
  /** A veth's peer's ifindex (in the peer's namespace). */
  readonly link_index?: number;
}

/**
 * Network links as veth pairs between two containers' network namespaces (each container has its
 * own, `<privnet/>`). The pair is created with each end directly in its namespace (`ip link add ...
 * netns PID ... peer ... netns PID`): no end is ever a host interface, and when either container
 * stops its namespace goes, taking its end and with it the peer, so nothing is left on the host.
 */
export class VethLinks {
  /** `initPid(name)`: the host pid of the running container's init, undefined when it does not run. */
  constructor(private readonly initPid: (name: string) => Promise<number | undefined>) {}

  async attach(link: NetworkLink): Promise<void> {
    const what = `attach the link of ${link.frontendDomain} to ${link.backendDomain}`;
    const { mac, vif, vifMac } = checked(link, what);
    const front = await this.running(link.frontendDomain, what);
    const back = await this.running(link.backendDomain, what);
    const ours = (await links(front, what)).find((l) => l.address === mac);
    const theirs = (await links(back, what)).find((l) => l.ifname === vif);
    const peers = ours?.link_index === theirs?.ifindex && theirs?.link_index === ours?.ifindex;
    if (ours && theirs && peers && theirs.address === vifMac) return;
    // Anything stale (an end left from another netvm, a name taken): deleting one end of a veth
    // deletes its peer too, wherever it is, so the netvm's is looked for again after.
    if (ours) await ip(front, ['link', 'del', 'dev', ours.ifname], what);
    const stale = (await links(back, what)).find((l) => l.ifname === vif);
    if (stale) await ip(back, ['link', 'del', 'dev', vif], what);
    const taken = (await links(front, what)).some((l) => l.ifname === FRONTEND_IFNAME);
    if (taken) {
      throw new VmmError(
        'failed',
        `${what}: ${link.frontendDomain} already has an interface ${FRONTEND_IFNAME} with another MAC`,
      );
    }
    await ip(
      front,
      [
        'link',
        'add',
        FRONTEND_IFNAME,
        'address',
        mac,
        'type',
        'veth',
        'peer',
        'name',
        vif,
        'address',
        vifMac,
        'netns',
        String(back),
      ],
      what,
    );
  }

  async detach(link: NetworkLink): Promise<void> {
    const what = `detach the link of ${link.frontendDomain} from ${link.backendDomain}`;
    const { mac, vif } = checked(link, what);
    const back = await this.initPid(link.backendDomain);
    if (back !== undefined) {
      const theirs = (await links(back, what)).find((l) => l.ifname === vif);
      if (theirs) await ip(back, ['link', 'del', 'dev', vif], what);
    }
    const front = await this.initPid(link.frontendDomain);
    if (front !== undefined) {
      // Its peer may have gone with the netvm's end above, or with a netvm that stopped.
      const ours = (await links(front, what)).find((l) => l.address === mac);
      if (ours) await ip(front, ['link', 'del', 'dev', ours.ifname], what);
    }
  }

  private async running(name: string, what: string): Promise<number> {
    const pid = await this.initPid(name);
    if (pid === undefined) throw new VmmError('invalid-state', `${what}: ${name} is not running`);
    return pid;
  }
}

function checked(link: NetworkLink, what: string): { mac: string; vif: string; vifMac: string } {
  const mac = link.mac.toLowerCase();
  if (!MAC.test(mac)) throw new VmmError('failed', `${what}: not a MAC address: ${JSON.stringify(link.mac)}`);
  try {
    return { mac, vif: backendIfname(link.ip), vifMac: backendMac(link.ip) };
  } catch (error) {
    throw new VmmError('failed', `${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Runs iproute2 in the network namespace of host pid `pid` (the host's `ip`, the container's namespace). */
export async function ip(pid: number, args: readonly string[], what: string): Promise<string> {
  try {
    const { stdout } = await run('nsenter', ['-t', String(pid), '-n', '--', 'ip', ...args], {
      timeout: IP_TIMEOUT_MS,
      maxBuffer: IP_MAX_OUTPUT,
    });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new VmmError('failed', `${what}: ip ${args.join(' ')}: ${stderr || String(error)}`);
  }
}

async function links(pid: number, what: string): Promise<IpLink[]> {
  return JSON.parse(await ip(pid, ['-j', 'link', 'show'], what)) as IpLink[];
}

/**
 * The host pid of a libvirt LXC container's init: libvirt's domain id is the pid of the container's
 * `libvirt_lxc` controller, whose child in another pid namespace is the init.
 */
export async function containerInitPid(controllerPid: number): Promise<number | undefined> {
  const own = await readNs(controllerPid);
  if (own === undefined) return undefined;
  const tasks = await readdir(`/proc/${controllerPid}/task`).catch(() => []);
  for (const task of tasks) {
    const children = await readFile(`/proc/${controllerPid}/task/${task}/children`, 'utf8').catch(() => '');
    for (const child of children.split(' ').filter(Boolean).map(Number)) {
      const ns = await readNs(child);
      if (ns !== undefined && ns !== own) return child;
    }
  }
  return undefined;
}

async function readNs(pid: number): Promise<string | undefined> {
  return readlink(`/proc/${pid}/ns/pid`).catch(() => undefined);
}
