import { describe, expect, it } from 'vitest';
import { encodeForVmExec, featureEnabled } from '../../src/cli/commands/vmexec.js';

describe('encodeForVmExec', () => {
  it("encodes upstream's examples (qubesadmin/tests/utils.py) as upstream does", () => {
    expect(encodeForVmExec(['ls', '-a', '+x'])).toBe('ls+--a+-2Bx');
    expect(encodeForVmExec(['touch', '/home/user/.profile'])).toBe('touch+-2Fhome-2Fuser-2F.profile');
  });

  it('encodes each UTF-8 byte, spaces and quotes included, and keeps empty words', () => {
    expect(encodeForVmExec(['printf', '%s', 'a b'])).toBe('printf+-25s+a-20b');
    expect(encodeForVmExec(['echo', 'ż', "'", ''])).toBe('echo+-C5-BC+-27+');
    expect(encodeForVmExec(['A_z.9'])).toBe('A_z.9');
  });
});

describe('featureEnabled', () => {
  it('is true for a set, non-empty value only', () => {
    expect([featureEnabled('1'), featureEnabled(''), featureEnabled(undefined)]).toEqual([
      true,
      false,
      false,
    ]);
  });
});
