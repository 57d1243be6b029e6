import { watch as watchFs } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { basename, dirname } from 'node:path';
import type { QubesDbClient } from '@odyssey/qubesdb';
import { clientIpOfMac, resolvConfNameservers, vifName } from './addressing.js';
import { follow, run } from './commands.js';
import { isBlocked, parseConntrackList } from './conntrack.js';
import { parseClientRules, type NetRule } from './firewall-rules.js';
import { configureFrontend, configureUplink, configureVif, listLinks, type Link } from './links.js';
import { REWRITE_PROBE, renderRuleset, type ClientLink, type VisibleAddresses } from './nft-ruleset.js';
import {
  adoptNetbackVif,
  markConnected,
  netbackVif,
  removeBackendDir,
  type BackendStore,
} from './xen-vifs.js';

/** The qube's own addressing in QubesDB (upstream's setup-ip reads these). */
const FRONTEND_KEYS = ['/qubes-ip', '/qubes-gateway', '/qubes-primary-dns', '/qubes-secondary-dns'];

export interface NetDaemonOptions {
  readonly qdb: QubesDbClient;
  /** The resolv.conf this qube writes (a client) and forwards DNS to (a netvm); default /etc/resolv.conf. */
  readonly resolvConf?: string;
  /** The DHCP client command for an uplink named by its argument. */
  readonly dhcpClient: (ifname: string) => string[];
  readonly log: (message: string) => void;
  /** This domain's xenstore, in a Xen domU: a netvm's client vifs are netback's (xen-vifs.ts). */
  readonly xenstore?: BackendStore;
}

/**
 * The guest's networking (upstream: setup-ip, vif-route-qubes,
 * qubes-setup-dnat-to-ns and qubes-firewall in one daemon): configures each
 * NIC from QubesDB as it appears (own frontend, client vif, or uplink), and
 * in a netvm keeps the nftables ruleset in step with its clients, their
 * firewall in QubesDB and its own resolvers.
 */
/** When the link scans after start run, ms after the monitor started. */
const RESCAN_AFTER_START_MS = [1000, 5000];

export class NetDaemon {
  readonly #options: NetDaemonOptions;
  readonly #resolvConf: string;
  /**
   * The NICs set up (or tried), by MAC (a rename keeps it), with the name they were left under. A
   * NIC listed under another name was renamed behind the daemon's back (udev names a hot-plugged
   * NIC while the daemon configures it, and a NIC that is down stays renamable), and is set up
   * again under its new one.
   */
  readonly #configured = new Map<string, string>();
  readonly #links = new Map<string, ClientLink>();
  readonly #firewalls = new Map<string, readonly NetRule[] | null>();
  readonly #resolved = new Map<string, readonly string[]>();
  #connectedIps: string[] = [];
  #nameservers: string[] = [];
  #qubesDns: string[] = [];
  #ownMac: string | undefined;
  /** Why this netvm cannot show clients other addresses (REWRITE_PROBE refused), if it cannot. */
  #noRewrite: string | undefined;
  #gateway: string | undefined;
  /** One change at a time, in order: links, firewall and resolver updates all end in one ruleset. */
  #queue: Promise<void> = Promise.resolve();
  readonly #stops: (() => void)[] = [];
  /** How long the last ruleset took nft to apply, ms (reported in the log). */
  lastApplyMs = 0;

  constructor(options: NetDaemonOptions) {
    this.#options = options;
    this.#resolvConf = options.resolvConf ?? '/etc/resolv.conf';
  }

  get isNetvm(): boolean {
    return this.#gateway !== undefined;
  }

  async start(): Promise<void> {
    const qdb = this.#options.qdb;
    const read = async (path: string): Promise<string | undefined> => (await qdb.read(path))?.toString();
    this.#ownMac = (await read('/qubes-mac'))?.toLowerCase();
    this.#gateway = await read('/qubes-netvm-gateway');
    if (this.isNetvm) {
      this.#qubesDns = (
        await Promise.all(['/qubes-netvm-primary-dns', '/qubes-netvm-secondary-dns'].map(read))
      ).filter((v): v is string => v !== undefined && v !== '');
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
      // Loaded before any client starts: libxl waits a few seconds only for netback to take a new vif.
      if (this.#options.xenstore)
        await run('modprobe', ['xen-netback']).catch((error: unknown) => this.#options.log(String(error)));
      this.#noRewrite = await run('nft', ['-c', '-f', '-'], REWRITE_PROBE).then(
        () => undefined,
        (error: unknown) =>
          String(error)
            .split('\n')
            .find((line) => line.includes('Error')) ?? String(error),
      );
      this.#nameservers = await this.#readNameservers();
      await qdb.watch('/qubes-firewall/');
      await qdb.watch('/connected-ips');
      await qdb.watch('/mapped-ip/');
      this.#connectedIps = ((await read('/connected-ips')) ?? '').split(' ').filter(Boolean);
      for (const path of await qdb.list('/qubes-firewall/')) {
        if (path.split('/').length === 3) await this.#loadFirewall(path.split('/')[2] ?? '');
      }
      this.#watchResolvConf();
    }
    if (this.#ownMac !== undefined) {
      // core may write a new netvm's addresses after the NIC reappears: configure it again when they change.
      for (const path of FRONTEND_KEYS) await qdb.watch(path);
    }
    if (this.isNetvm || this.#ownMac !== undefined) void this.#watchQubesDb();
    const monitor = follow('ip', ['-o', 'monitor', 'link'], () => this.#enqueue(() => this.#scanLinks()));
    this.#stops.push(monitor.stop);
    await monitor.started;
    await this.#enqueue(() => this.#scanLinks());
    // ip monitor says nothing once it listens: a NIC that appears between the scan above and its
    // subscription (a backend attaching a link right after the domain started) would wait for some
    // later link event. Two more scans cover that window.
    for (const ms of RESCAN_AFTER_START_MS) {
      const timer = setTimeout(() => void this.#enqueue(() => this.#scanLinks()), ms);
      timer.unref();
      this.#stops.push(() => clearTimeout(timer));
    }
  }

  /** Waits for everything queued so far (tests: a change is applied once this resolves). */
  settled(): Promise<void> {
    return this.#enqueue(() => Promise.resolve());
  }

  stop(): void {
    for (const stop of this.#stops.splice(0)) stop();
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(task).catch((error: unknown) => this.#options.log(String(error)));
    this.#queue = next;
    return next;
  }

  async #scanLinks(): Promise<void> {
    const present = await listLinks();
    const macs = new Set(present.map((link) => link.mac));
    let changed = false;
    for (const [mac, ip] of [...this.#links.entries()]) {
      if (!macs.has(mac)) {
        this.#links.delete(mac);
        this.#configured.delete(mac);
        this.#options.log(`client ${ip.ip} is gone (${ip.ifname})`);
        changed = true;
        // A client vif netback made keeps its name, which names its backend directory.
        const dir = netbackVif(ip.ifname)?.dir;
        if (dir !== undefined && this.#options.xenstore)
          await removeBackendDir(dir, this.#options.xenstore).catch((error: unknown) =>
            this.#options.log(`${dir}: not removed: ${String(error)}`),
          );
      }
    }
    for (const mac of [...this.#configured.keys()]) if (!macs.has(mac)) this.#configured.delete(mac);
    for (const link of present) {
      if (this.#configured.get(link.mac) === link.ifname) continue;
      this.#configured.set(link.mac, link.ifname);
      try {
        changed = (await this.#configure(link)) || changed;
      } catch (error) {
        // Most often udev renamed the NIC mid-way: the rename is a link event, and the new name is
        // tried again. The name tried stays noted, so a NIC that fails for good is not retried forever.
        this.#options.log(`${link.ifname}: not configured: ${String(error)}`);
      }
    }
    if (changed) await this.#apply();
  }

  async #reconfigureFrontend(): Promise<void> {
    const own = (await listLinks()).find((link) => link.mac === this.#ownMac);
    if (own) await this.#configure(own);
  }

  /** Sets a new NIC up by what its MAC says; true when the netvm's ruleset must change. */
  async #configure(found: Link): Promise<boolean> {
    const store = this.#options.xenstore;
    const netback = store ? netbackVif(found.ifname) : undefined;
    if (netback && this.#gateway === undefined) {
      this.#options.log(`${found.ifname}: a client vif in a qube that provides no network: left down`);
      return false;
    }
    const link = netback && store ? await adoptNetbackVif(netback, store, this.#options.log) : found;
    if (!link) return false;
    const qdb = this.#options.qdb;
    const read = async (path: string): Promise<string> => (await qdb.read(path))?.toString() ?? '';
    if (link.mac === this.#ownMac) {
      const frontend = {
        ip: await read('/qubes-ip'),
        gateway: await read('/qubes-gateway'),
        dns: [await read('/qubes-primary-dns'), await read('/qubes-secondary-dns')].filter(Boolean),
      };
      await configureFrontend(link.ifname, frontend, this.#resolvConf);
      this.#options.log(`${link.ifname}: ${frontend.ip} via ${frontend.gateway}`);
      return false;
    }
    const clientIp = clientIpOfMac(link.mac);
    if (clientIp !== undefined) {
      if (this.#gateway === undefined) {
        this.#options.log(
          `${link.ifname}: a client NIC (${clientIp}) in a qube that provides no network: left down`,
        );
        return false;
      }
      // netback's vifN.M keeps its name, as upstream's; other backends' NICs get one from the address.
      const vif = netback ? link.ifname : vifName(clientIp);
      const visible = await this.#visibleAddresses(clientIp);
      await configureVif(link.ifname, vif, { ip: clientIp, visible }, this.#gateway);
      if (netback && store) await markConnected(netback, store);
      this.#links.set(link.mac, { ifname: vif, ip: clientIp, ...(visible && { visible }) });
      this.#configured.set(link.mac, vif);
      const shown = visible ? ` shown as ${visible.ip} via ${visible.gateway}` : '';
      this.#options.log(`${vif}: client ${clientIp}${shown}`);
      return true;
    }
    await configureUplink(link.ifname, this.#options.dhcpClient);
    this.#options.log(`${link.ifname}: uplink, DHCP`);
    return false;
  }

  /**
   * The client's /mapped-ip/<ip>/ entries, used as upstream's vif-route-qubes
   * does: only both together, and only when they differ from the real
   * address. They end up in nft's text and ip's arguments: anything but IPv4
   * addresses is ignored, and said so.
   */
  async #visibleAddresses(clientIp: string): Promise<VisibleAddresses | undefined> {
    const read = async (key: string): Promise<string> =>
      (await this.#options.qdb.read(`/mapped-ip/${clientIp}/${key}`))?.toString() ?? '';
    const ip = await read('visible-ip');
    const gateway = await read('visible-gateway');
    if (ip === '' || gateway === '' || ip === clientIp) return undefined;
    if (!isIPv4(ip) || !isIPv4(gateway)) {
      this.#options.log(
        `client ${clientIp}: visible addresses ignored: not IPv4 (${JSON.stringify([ip, gateway])})`,
      );
      return undefined;
    }
    if (this.#noRewrite !== undefined) {
      // Served as an ordinary client, what it sends from the visible address is dropped: no network.
      this.#options.log(
        `client ${clientIp}: cannot be shown ${ip} via ${gateway}: this kernel refuses the address rewriting here (${this.#noRewrite}); it gets no network`,
      );
      return undefined;
    }
    return { ip, gateway };
  }

  /** A client's visible addresses changed: its NIC, if present, is set up again with the new ones. */
  async #remap(clientIp: string): Promise<void> {
    const [mac, link] = [...this.#links.entries()].find(([, l]) => l.ip === clientIp) ?? [];
    if (mac === undefined || link === undefined) return;
    const visible = await this.#visibleAddresses(clientIp);
    if (visible?.ip === link.visible?.ip && visible?.gateway === link.visible?.gateway) return;
    this.#configured.delete(mac);
    await this.#scanLinks();
  }

  async #watchQubesDb(): Promise<void> {
    const qdb = this.#options.qdb;
    for (;;) {
      const path = await qdb.watchEvent();
      if (path === null) return;
      if (FRONTEND_KEYS.includes(path)) {
        void this.#enqueue(() => this.#reconfigureFrontend());
      } else if (path === '/connected-ips') {
        void this.#enqueue(async () => {
          this.#connectedIps = ((await qdb.read(path))?.toString() ?? '').split(' ').filter(Boolean);
          await this.#apply();
        });
      } else if (path.startsWith('/mapped-ip/')) {
        const ip = path.split('/')[2] ?? '';
        void this.#enqueue(() => this.#remap(ip));
      } else if (path.startsWith('/qubes-firewall/') && path.split('/').length === 3) {
        // Only the marker: core writes it after the client's rules, as upstream's daemon expects.
        const ip = path.split('/')[2] ?? '';
        void this.#enqueue(async () => {
          await this.#loadFirewall(ip);
          await this.#apply();
          await this.#dropBlockedConnections(ip);
          await this.#countHandled(ip);
        });
      }
    }
  }

  /** Reads one client's rules and resolves its names; unreadable rules block it (upstream's handle_addr). */
  async #loadFirewall(ip: string): Promise<void> {
    if (!isIPv4(ip)) {
      // IPv6 is not forwarded at all (the netvm leaves IPv6 forwarding off), so there is nothing to filter.
      this.#options.log(`rules for ${ip} ignored: IPv6 clients are not forwarded`);
      return;
    }
    const qdb = this.#options.qdb;
    const prefix = `/qubes-firewall/${ip}/`;
    const entries = new Map(
      (await qdb.multiread(prefix)).map(([key, value]) => [key.slice(prefix.length), value.toString()]),
    );
    if (entries.size === 0 && (await qdb.read(`/qubes-firewall/${ip}`)) === undefined) {
      this.#firewalls.delete(ip);
      return;
    }
    try {
      const rules = parseClientRules(entries);
      for (const rule of rules) {
        if (rule.dsthost === undefined) continue;
        const addresses = await lookup(rule.dsthost, { family: 4, all: true }).catch(() => []);
        this.#resolved.set(
          rule.dsthost,
          addresses.map((a) => a.address),
        );
        if (addresses.length === 0)
          this.#options.log(`Failed to resolve ${rule.dsthost} for ${ip}: blocking its traffic`);
      }
      this.#firewalls.set(ip, rules);
    } catch (error) {
      this.#options.log(`Failed to parse rules for ${ip} (${(error as Error).message}), blocking traffic`);
      this.#firewalls.set(ip, null);
    }
  }

  /**
   * Connections the client opened while older rules allowed them are ended
   * when the new rules would refuse them, as upstream's daemon does with
   * conntrack; without conntrack-tools they outlive the change.
   */
  async #dropBlockedConnections(ip: string): Promise<void> {
    if (!this.#firewalls.has(ip)) return;
    const rules = this.#firewalls.get(ip) ?? null;
    const listed = await run('conntrack', ['-L', '--family', 'ipv4', '--src', ip]).catch((error: unknown) => {
      this.#options.log(`existing connections of ${ip} are kept: ${String(error)}`);
      return '';
    });
    for (const connection of parseConntrackList(listed)) {
      if (!isBlocked(rules, connection, this.#resolved, this.#nameservers)) continue;
      const args = ['-D', '--src', ip, '--dst', connection.dst, '--proto', connection.proto];
      await run('conntrack', [...args, '--dport', String(connection.dport)]).catch(() => undefined);
    }
  }

  /** Upstream's update_handled: a count under /qubes-firewall-handled/<ip> that applications (and tests) watch. */
  async #countHandled(ip: string): Promise<void> {
    const path = `/qubes-firewall-handled/${ip}`;
    const count = Number((await this.#options.qdb.read(path))?.toString() ?? '0');
    await this.#options.qdb.write(path, String((Number.isInteger(count) ? count : 0) + 1));
  }

  async #readNameservers(): Promise<string[]> {
    return resolvConfNameservers(await readFile(this.#resolvConf, 'utf8').catch(() => ''));
  }

  /** DNS forwarding follows the netvm's own resolvers (upstream re-runs dnat-to-ns when they change). */
  #watchResolvConf(): void {
    const watcher = watchFs(dirname(this.#resolvConf), (_event, name) => {
      if (name !== basename(this.#resolvConf)) return;
      void this.#enqueue(async () => {
        const next = await this.#readNameservers();
        if (next.join(' ') === this.#nameservers.join(' ')) return;
        this.#nameservers = next;
        // Names that did not resolve before (sys-net before its DHCP lease) may now: every client's rules again.
        for (const ip of [...this.#firewalls.keys()]) await this.#loadFirewall(ip);
        await this.#apply();
      });
    });
    this.#stops.push(() => watcher.close());
  }

  async #apply(): Promise<void> {
    if (!this.isNetvm) return;
    const text = renderRuleset({
      links: [...this.#links.values()],
      connectedIps: this.#connectedIps,
      firewalls: this.#firewalls,
      resolved: this.#resolved,
      nameservers: this.#nameservers,
      qubesDns: this.#qubesDns,
      gateway: this.#gateway ?? '',
    });
    const started = performance.now();
    await run('nft', ['-f', '-'], text);
    this.lastApplyMs = performance.now() - started;
  }
}
