import { execFile } from 'node:child_process';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { qubesDbArrived } from './qubesdb-arrival.js';

/** Upstream's rule for a qube's name (qubes.vm.validate_name); anything else from QubesDB is refused. */
const VM_NAME = /^[a-zA-Z][a-zA-Z0-9_.-]{0,30}$/;

/** Debian names the host's own name on this address, so it resolves without DNS. */
const HOST_ADDRESS = '127.0.1.1';

/**
 * /etc/hosts with the host's own name on 127.0.1.1: the line for that address replaced, or added
 * after the first line when there is none. Other lines are kept as they are.
 */
export function hostsWithName(hosts: string, name: string): string {
  const line = `${HOST_ADDRESS}\t${name}`;
  const lines = hosts.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const at = lines.findIndex((l) => l.split(/\s+/)[0] === HOST_ADDRESS);
  if (at >= 0) lines[at] = line;
  else lines.splice(Math.min(1, lines.length), 0, line);
  return `${lines.join('\n')}\n`;
}

export interface VmNameOptions {
  readonly hostsPath?: string;
  /** Sets the kernel's hostname; default: hostname(1). */
  readonly setHostname?: (name: string) => Promise<void>;
}

/**
 * Upstream's qubes-early-vm-config: the qube's hostname becomes its name (QubesDB `/name`),
 * resolvable locally, so programs that look up their own host (sudo) do not wait on DNS through
 * the netvm. Returns false, changing nothing, for a name upstream would not have given a qube.
 */
export async function applyVmName(name: string, options: VmNameOptions = {}): Promise<boolean> {
  if (!VM_NAME.test(name)) return false;
  const hostsPath = options.hostsPath ?? '/etc/hosts';
  const setHostname =
    options.setHostname ?? (async (n: string) => void (await promisify(execFile)('hostname', [n])));
  await setHostname(name);
  const hosts = await readFile(hostsPath, 'utf8').catch(() => '127.0.0.1\tlocalhost\n');
  const updated = hostsWithName(hosts, name);
  if (updated !== hosts) {
    // Replaced whole: a reader never sees half a file.
    await writeFile(`${hostsPath}.odyssey-new`, updated, { mode: 0o644 });
    await rename(`${hostsPath}.odyssey-new`, hostsPath);
  }
  return true;
}

/** What nameFromQubesDb needs of the domain's QubesDB daemon. */
export interface NameSource {
  readonly ready: Promise<void>;
  read(path: string): string | undefined;
}

/**
 * `--vm-name`: the host named after QubesDB `/name` before the agent serves calls. dom0 serves
 * QubesDB from the domain's start, before it waits for the agent; bounded all the same, so an
 * unreachable dom0 delays the agent, never stops it. Failures are logged, never thrown.
 */
export async function nameFromQubesDb(
  qubesDb: NameSource,
  log: (message: string) => void,
  options: VmNameOptions & { readonly waitMs?: number } = {},
): Promise<void> {
  const synced = await qubesDbArrived(qubesDb.ready, options.waitMs);
  const name = synced ? qubesDb.read('/name') : undefined;
  if (name === undefined) {
    log('no QubesDB /name: the hostname stays as it is');
    return;
  }
  await applyVmName(name, options).then(
    (applied) => applied || log(`QubesDB /name is not a qube's name: the hostname stays as it is`),
    (error: unknown) => log(`cannot name the host ${name}: ${String(error)}`),
  );
}
