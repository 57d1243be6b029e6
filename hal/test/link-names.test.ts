import { describe, expect, it } from 'vitest';
import { backendIfname, backendMac } from '../src/index.js';

describe("a link's names on the netvm's side", () => {
  it('are the MAC fe:00:<ip> and the interface vif<ip in hex>, as the guest net daemon names a client NIC', () => {
    expect(backendMac('10.137.0.7')).toBe('fe:00:0a:89:00:07');
    expect(backendIfname('10.137.0.7')).toBe('vif0a890007');
    expect(backendIfname('255.255.255.255')).toHaveLength(11);
  });

  it('refuses what is not an IPv4 address', () => {
    for (const bad of [
      '10.137.0',
      '10.137.0.256',
      'fe80::1',
      '',
      '10.137.0.7\n',
      ' 10.137.0.7',
      '10.137.0. 7',
      '10.137.0.0x7',
      '10.137.0.07',
      '10.137.0.1e0',
    ])
      expect(() => backendIfname(bad)).toThrow(/not an IPv4 address/);
  });
});
