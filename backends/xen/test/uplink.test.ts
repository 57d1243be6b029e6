import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostResolver, udhcpdConf, uplinkRuleset } from '../src/uplink.js';
import { spawnSync } from 'node:child_process';

const nftCheck = spawnSync('nft', ['-c', '-f', '-'], { input: 'table ip odyssey-probe\n' });
const noNft = nftCheck.status === 0 ? undefined : `nft -c fails here: ${String(nftCheck.stderr)}`;
if (noNft) console.log(`uplink ruleset check skipped: ${noNft}`);

describe("dom0's side of Xen uplinks", () => {
  it('forwards DNS to the first IPv4 resolver of resolv.conf, dom0 loopback without one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-uplink-'));
    const conf = join(dir, 'resolv.conf');
    await writeFile(conf, '# x\nnameserver fe80::1\nnameserver 192.0.2.9\nnameserver 192.0.2.10\n');
    expect(await hostResolver(conf)).toBe('192.0.2.9');
    await writeFile(conf, 'search example\n');
    expect(await hostResolver(conf)).toBe('127.0.0.1');
    expect(await hostResolver(join(dir, 'absent'))).toBe('127.0.0.1');
  });

  it("serves slirp's addresses by DHCP on the bridge", () => {
    const conf = udhcpdConf('/run/x/uplink');
    expect(conf.split('\n')).toEqual(
      expect.arrayContaining([
        'start 10.0.2.15',
        'interface odyssey-up0',
        'option router 10.0.2.2',
        'option dns 10.0.2.3',
        'pidfile /run/x/uplink/udhcpd.pid',
      ]),
    );
  });

  it.skipIf(noNft !== undefined)('is a ruleset nft accepts, replacing its own table whole', () => {
    const text = uplinkRuleset('127.0.0.1');
    expect(text).toContain('iifname "odyssey-up0" ip daddr 10.0.2.2 dnat to 127.0.0.1');
    expect(text).toContain('ip saddr 10.0.2.0/24 oifname != "odyssey-up0" masquerade');
    const checked = spawnSync('nft', ['-c', '-f', '-'], { input: text, encoding: 'utf8' });
    expect(checked.stderr).toBe('');
    expect(checked.status).toBe(0);
  });
});
