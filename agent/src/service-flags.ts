import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { qubesDbArrived } from './qubesdb-arrival.js';

/** The services on by default in each kind of qube, as upstream's qubes-sysinit has them. */
const COMMON = ['meminfo-writer', 'software-rendering'];
const APPVM = [
  'qubes-update-check',
  'meminfo-writer',
  'tracker',
  'evolution-data-server',
  'software-rendering',
];
const DEFAULT_SERVICES: Readonly<Record<string, readonly string[]>> = {
  AppVM: APPVM,
  NetVM: [
    'network-manager',
    'qubes-network',
    'qubes-update-check',
    'qubes-updates-proxy',
    'meminfo-writer',
    'qubes-firewall',
    'software-rendering',
  ],
  ProxyVM: ['qubes-network', 'qubes-firewall', 'qubes-update-check', 'meminfo-writer', 'software-rendering'],
  TemplateVM: [...APPVM, 'updates-proxy-setup'],
  DispVM: COMMON,
};
/** The kinds that leave a marker, /run/qubes/this-is-<kind>. */
const MARKED = new Set(['AppVM', 'NetVM', 'ProxyVM', 'TemplateVM']);
const PERSISTENCE = new Set(['full', 'rw-only', 'none']);
/** What qubes-sysinit takes as a service name; anything else from QubesDB is skipped. */
const SERVICE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const SERVICE_PREFIX = '/qubes-service/';

/** What writeServiceFlags needs of the domain's QubesDB. */
export interface ServiceFlagsSource {
  readonly ready: Promise<void>;
  read(path: string): string | undefined;
  entries(prefix: string): readonly (readonly [string, string])[];
}

/**
 * Upstream's qubes-sysinit, which the guest's own units and scripts test for: a file
 * /run/qubes-service/<name> for each service that is on (the kind's defaults, then QubesDB's
 * /qubes-service/ entries, 1 on and 0 off), /run/qubes/this-is-<kind> and
 * /run/qubes/persistent-<full|rw-only|none>. Where upstream stops the boot on an unknown kind or
 * persistence, this leaves out what depends on it and says so, and a failure is logged, never
 * stopping the agent. Returns the services that are on, or nothing when none could be written.
 */
export async function writeServiceFlags(
  db: ServiceFlagsSource,
  log: (message: string) => void,
  options: { readonly root?: string; readonly waitMs?: number } = {},
): Promise<string[] | undefined> {
  const synced = await qubesDbArrived(db.ready, options.waitMs);
  if (!synced) {
    log('service flags: QubesDB has not arrived: none written');
    return undefined;
  }
  try {
    return await writeFlags(db, log, options.root ?? '');
  } catch (error) {
    log(`service flags: ${String(error)}`);
    return undefined;
  }
}

async function writeFlags(
  db: ServiceFlagsSource,
  log: (message: string) => void,
  root: string,
): Promise<string[]> {
  const run = join(root, '/run/qubes');
  const flags = join(root, '/run/qubes-service');
  await mkdir(run, { recursive: true });
  await mkdir(flags, { recursive: true });
  const kind = db.read('/qubes-vm-type') ?? '';
  const defaults = DEFAULT_SERVICES[kind];
  if (!defaults) log(`service flags: unknown qube type ${JSON.stringify(kind)}: only QubesDB's services`);
  if (MARKED.has(kind)) await writeFile(join(run, `this-is-${kind.toLowerCase()}`), '');
  const persistence = db.read('/qubes-vm-persistence') ?? '';
  if (PERSISTENCE.has(persistence)) await writeFile(join(run, `persistent-${persistence}`), '');
  else log(`service flags: unknown persistence ${JSON.stringify(persistence)}`);

  const on = new Set(defaults ?? COMMON);
  const off: string[] = [];
  for (const [path, value] of db.entries(SERVICE_PREFIX)) {
    const name = path.slice(SERVICE_PREFIX.length);
    if (!SERVICE_NAME.test(name)) continue;
    if (value === '1') on.add(name);
    else if (value === '0') {
      on.delete(name);
      off.push(name);
    }
  }
  // An agent restarted in the same boot finds the files of the first run.
  for (const name of off) await rm(join(flags, name), { force: true });
  for (const name of on) await writeFile(join(flags, name), '');
  return [...on].sort();
}
