import { isIPv4 } from 'node:net';
import { macOfClientIp } from './addressing.js';
import { run } from './commands.js';
import type { Link } from './links.js';

/** What the daemon reads and writes of this domain's own xenstore directory (paths relative to it). */
export interface BackendStore {
  read(path: string): Promise<string | undefined>;
  write(path: string, value: string): Promise<void>;
  remove(path: string): Promise<void>;
}

/** The name Linux's xen-netback gives the backend interface of frontend domain D's device H. */
const NETBACK_NAME = /^vif(\d{1,5})\.(\d{1,4})$/;

/** A netback interface not yet taken over: its xenstore backend directory. */
export interface NetbackVif {
  readonly ifname: string;
  readonly dir: string;
}

export function netbackVif(ifname: string): NetbackVif | undefined {
  const match = NETBACK_NAME.exec(ifname);
  if (!match) return undefined;
  return { ifname, dir: `backend/vif/${match[1]}/${match[2]}` };
}

/**
 * A client's vif in a Xen netvm, which netback creates with the MAC fe:ff:ff:ff:ff:ff for every
 * client: the client's address is the `ip` libxl wrote into its backend directory (upstream's
 * vif-route-qubes reads the same key). The interface takes the client MAC of that address, the
 * contract the rest of the daemon keys clients by (addressing.ts), and keeps netback's name, as
 * upstream's netvms do; the returned link is what it is now. Undefined, with the interface
 * untouched, when the key is absent or not one IPv4 address.
 */
export async function adoptNetbackVif(
  vif: NetbackVif,
  store: BackendStore,
  log: (message: string) => void,
): Promise<Link | undefined> {
  const ip = (await store.read(`${vif.dir}/ip`))?.trim();
  if (ip === undefined || !isIPv4(ip)) {
    log(`${vif.ifname}: no client address in xenstore ${vif.dir}/ip (${JSON.stringify(ip)}): left down`);
    return undefined;
  }
  const mac = macOfClientIp(ip);
  await run('ip', ['link', 'set', 'dev', vif.ifname, 'down']);
  await run('ip', ['link', 'set', 'dev', vif.ifname, 'address', mac]);
  return { ifname: vif.ifname, mac };
}

/**
 * Tells netback the interface is set up (what a hotplug script's success does): libxl leaves
 * `hotplug-status` empty, and netback holds the frontend's connection until it reads `connected`.
 */
export async function markConnected(vif: NetbackVif, store: BackendStore): Promise<void> {
  await store.write(`${vif.dir}/hotplug-status`, 'connected');
}

/**
 * The vif is gone: netback unregisters it once the client's side closed with the device offline
 * (a detach or the client's end). Its backend directory is then the driver domain's to remove
 * (what `xl devd` does after the hotplug script's offline run): libxl in dom0 waits for that
 * before it calls the detach done.
 */
export async function removeBackendDir(dir: string, store: BackendStore): Promise<void> {
  await store.remove(dir);
}
