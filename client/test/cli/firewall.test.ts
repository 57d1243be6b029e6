import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { runQvmRecorded } from '../helpers/run-qvm.js';
import { SYSTEM } from '../fixtures/system.js';

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget(SYSTEM);
});
afterAll(() => target.close());

const run = (args: string[]) => runQvmRecorded(target, args);

const LIST = 'admin.vm.List+ dom0 name dom0\0';

describe('qvm firewall', () => {
  it('lists rules as qvm-firewall’s table', async () => {
    const { code, stdout, requests } = await run(['firewall', 'newvm']);
    expect(code).toBe(0);
    expect(stdout).toBe(
      'NO  ACTION  HOST         PROTOCOL  PORT(S)  SPECIAL TARGET  ICMP TYPE  EXPIRE  COMMENT\n' +
        '0   accept  -            -         -        -               -          -       -\n' +
        '1   accept  1.2.3.4/32   tcp       80       -               -          -       -\n' +
        '2   drop    example.com  udp       53-54    -               -          -       hello\n' +
        '3   accept  -            -         -        dns             -          -       -\n' +
        '4   accept  -            icmp      -        -               8          -       -\n',
    );
    expect(requests).toEqual([LIST, 'admin.vm.firewall.Get+ dom0 name newvm\0']);
  });

  it('--raw prints the rules re-serialised in API syntax', async () => {
    expect((await run(['firewall', '--raw', 'newvm'])).stdout).toBe(
      'action=accept\n' +
        'action=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80\n' +
        'action=drop proto=udp dsthost=example.com dstports=53-54 comment=hello\n' +
        'action=accept specialtarget=dns\n' +
        'action=accept proto=icmp icmptype=8\n',
    );
  });

  it('adds a rule with Get then Set of the whole list (captured qvm-firewall bytes)', async () => {
    const { code, requests } = await run([
      'firewall',
      'work',
      'add',
      'accept',
      'dsthost=1.2.3.4',
      'proto=tcp',
      'dstports=80',
    ]);
    expect(code).toBe(0);
    expect(requests).toEqual([
      LIST,
      'admin.vm.firewall.Get+ dom0 name work\0',
      'admin.vm.firewall.Set+ dom0 name work\0action=accept\naction=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80\n',
    ]);
  });

  it('deletes by number or by rule, and resets', async () => {
    const expected =
      'admin.vm.firewall.Set+ dom0 name newvm\0action=accept\naction=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80\n' +
      'action=accept specialtarget=dns\naction=accept proto=icmp icmptype=8\n';
    expect((await run(['firewall', 'newvm', 'del', '--rule-no', '2'])).requests[2]).toBe(expected);
    expect(
      (await run(['firewall', 'newvm', 'del', 'drop', 'example.com', 'udp', '53-54', 'comment=hello']))
        .requests[2],
    ).toBe(expected);
    expect((await run(['firewall', 'newvm', 'reset'])).requests).toEqual([
      LIST,
      'admin.vm.firewall.Set+ dom0 name newvm\0action=accept\n',
    ]);
  });

  it('rejects bad rules before calling Set', async () => {
    const { code, stderr, requests } = await run([
      'firewall',
      'work',
      'add',
      'accept',
      'proto=tcp',
      'icmptype=8',
    ]);
    expect(code).toBe(2);
    expect(stderr).toBe("error: icmptype valid only for 'icmp' protocol\n");
    expect(requests.some((r) => r.startsWith('admin.vm.firewall.Set'))).toBe(false);
  });

  it('--json lists rules with their fields', async () => {
    const rules = JSON.parse((await run(['--json', 'firewall', 'newvm'])).stdout) as unknown[];
    expect(rules[1]).toEqual({
      rule: 'action=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80',
      action: 'accept',
      dsthost: '1.2.3.4/32',
      proto: 'tcp',
      dstports: '80',
      specialtarget: null,
      icmptype: null,
      expire: null,
      comment: null,
    });
  });
});
