import { describe, expect, it } from 'vitest';
import { echoRequest } from '../src/serve-guest.js';

describe("the vchan echo a guest's kernel command line asks for", () => {
  it('takes the port, and a ring size for both directions when one is given', () => {
    expect(echoRequest('console=hvc0 odyssey.vchan_echo=700\n')).toEqual({ port: 700 });
    expect(echoRequest('odyssey.vchan_echo=700 odyssey.vchan_echo_ring=262144 panic=-1\n')).toEqual({
      port: 700,
      ring: 262144,
    });
  });

  it('serves no echo without a whole decimal port, and no ring beyond 1 MiB or of no bytes', () => {
    for (const cmdline of [
      'quiet',
      'odyssey.vchan_echo=',
      'odyssey.vchan_echo=7x',
      'odyssey.vchan_echo=70000',
    ])
      expect(echoRequest(`${cmdline}\n`), cmdline).toBeUndefined();
    for (const ring of ['0', '2097152', '64k', '-1', ''])
      expect(echoRequest(`odyssey.vchan_echo=700 odyssey.vchan_echo_ring=${ring}\n`), ring).toEqual({
        port: 700,
      });
  });
});
