import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VmmError } from '@odyssey/hal';

/** dom0's bridge for uplink vifs (libxl's vif-bridge script puts each on it). */
export const UPLINK_BRIDGE = 'odyssey-up0';

/**
 * What an uplink sees, the addresses of QEMU's user-mode network (the KVM backend's uplink), so a
 * guest finds the same on either backend: itself by DHCP from 10.0.2.15, dom0 as its gateway
 * 10.0.2.2, which also stands for dom0's own loopback (as slirp's host alias does), and a DNS
 * server at 10.0.2.3 that is dom0's resolver.
 */
export const UPLINK = {
  network: '10.0.2.0/24',
  gateway: '10.0.2.2',
  dns: '10.0.2.3',
  first: '10.0.2.15',
  last: '10.0.2.254',
} as const;

const exec = promisify(execFile);

async function run(file: string, args: readonly string[], input?: string): Promise<void> {
  const child = exec(file, args);
  if (input !== undefined) child.child.stdin?.end(input);
  try {
    await child;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new VmmError('failed', `uplink: ${file} ${args.join(' ')}: ${stderr || String(error)}`, {
      cause: error,
    });
  }
}

/** dom0's first IPv4 resolver (what slirp forwards to), or its loopback when it names none. */
export async function hostResolver(resolvConf = '/etc/resolv.conf'): Promise<string> {
  const text = await readFile(resolvConf, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [keyword, address] = line.trim().split(/\s+/);
    if (keyword === 'nameserver' && address && /^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return address;
  }
  return '127.0.0.1';
}

/**
 * The nftables table: traffic to the gateway goes to dom0's loopback, DNS to its resolver (both
 * need route_localnet when that is a loopback address), and what uplinks send elsewhere leaves
 * masqueraded as dom0.
 */
export function uplinkRuleset(resolver: string): string {
  const bridge = JSON.stringify(UPLINK_BRIDGE);
  return `table ip odyssey-uplink
delete table ip odyssey-uplink
table ip odyssey-uplink {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname ${bridge} ip daddr ${UPLINK.gateway} dnat to 127.0.0.1
    iifname ${bridge} ip daddr ${UPLINK.dns} meta l4proto { tcp, udp } th dport 53 dnat to ${resolver}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${UPLINK.network} oifname != ${bridge} masquerade
  }
}
`;
}

/** busybox udhcpd's configuration: the uplink's addresses, gateway and DNS server. */
export function udhcpdConf(dir: string): string {
  return [
    `start ${UPLINK.first}`,
    `end ${UPLINK.last}`,
    `interface ${UPLINK_BRIDGE}`,
    `pidfile ${join(dir, 'udhcpd.pid')}`,
    `lease_file ${join(dir, 'udhcpd.leases')}`,
    'option subnet 255.255.255.0',
    `option router ${UPLINK.gateway}`,
    `option dns ${UPLINK.dns}`,
    'option lease 86400',
    '',
  ].join('\n');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes dom0's side of the uplinks, once per boot of dom0 and again after anything removed it:
 * the bridge with the gateway and DNS addresses, the NAT table, and a DHCP server (busybox's
 * udhcpd, which daemonizes; its pid file says whether one runs).
 */
export async function ensureUplink(runtimeDir: string): Promise<void> {
  const dir = join(runtimeDir, 'uplink');
  await mkdir(dir, { recursive: true });
  if (!existsSync(`/sys/class/net/${UPLINK_BRIDGE}`))
    await run('ip', [
      'link',
      'add',
      'name',
      UPLINK_BRIDGE,
      'type',
      'bridge',
      'stp_state',
      '0',
      'forward_delay',
      '0',
    ]);
  for (const address of [UPLINK.gateway, UPLINK.dns])
    await run('ip', ['address', 'replace', `${address}/24`, 'dev', UPLINK_BRIDGE]);
  await run('ip', ['link', 'set', 'dev', UPLINK_BRIDGE, 'up']);
  await writeFile(`/proc/sys/net/ipv4/conf/${UPLINK_BRIDGE}/route_localnet`, '1\n');
  await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
  await run('nft', ['-f', '-'], uplinkRuleset(await hostResolver()));
  const pid = Number((await readFile(join(dir, 'udhcpd.pid'), 'utf8').catch(() => '')).trim());
  if (Number.isInteger(pid) && pid > 0 && alive(pid)) return;
  const conf = join(dir, 'udhcpd.conf');
  await writeFile(conf, udhcpdConf(dir));
  await writeFile(join(dir, 'udhcpd.leases'), '');
  await new Promise<void>((resolve, reject) => {
    const child = spawn('busybox', ['udhcpd', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (error) =>
      reject(new VmmError('failed', `uplink: busybox udhcpd: ${error.message}`, { cause: error })),
    );
    child.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new VmmError('failed', `uplink: busybox udhcpd exited ${code}: ${stderr.trim()}`));
    });
  });
}
