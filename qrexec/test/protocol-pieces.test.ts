import { describe, expect, it } from 'vitest';
import {
  PortAllocator,
  parsePolicyResponse,
  parseVmCommand,
  splitServiceAndArg,
  targetIsDom0,
  vmServiceCommand,
  withArgument,
  negotiateVersion,
  QrexecProtocolError,
} from '../src/index.js';

describe('version negotiation', () => {
  it('takes the lower version and requires at least 2', () => {
    expect(negotiateVersion(4, 4)).toBe(4);
    expect(negotiateVersion(4, 3)).toBe(3);
    expect(negotiateVersion(4, 7)).toBe(4);
    expect(negotiateVersion(4, 2)).toBe(2);
    expect(() => negotiateVersion(4, 1)).toThrow(QrexecProtocolError);
  });
});

describe('command strings', () => {
  it('splits service and argument at the first +', () => {
    expect(splitServiceAndArg('admin.vm.Create.AppVM+fedora+40')).toEqual({
      service: 'admin.vm.Create.AppVM',
      argument: 'fedora+40',
      hasArgument: true,
    });
    expect(splitServiceAndArg('a.B')).toEqual({ service: 'a.B', argument: '', hasArgument: false });
    expect(withArgument('admin.vm.List')).toBe('admin.vm.List+');
    expect(withArgument('a.B+')).toBe('a.B+');
  });

  it('builds and parses the agent command line', () => {
    const line = vmServiceCommand('user', 'qubes.Filecopy+', 'work');
    expect(line).toBe('user:QUBESRPC qubes.Filecopy+ work');
    expect(parseVmCommand(line)).toEqual({
      kind: 'service',
      user: 'user',
      nogui: false,
      serviceAndArg: 'qubes.Filecopy+',
      source: 'work',
    });
    expect(parseVmCommand('root:nogui:QUBESRPC a.B+ dom0')).toMatchObject({
      kind: 'service',
      nogui: true,
      user: 'root',
    });
    expect(parseVmCommand('user:echo a:b c')).toEqual({
      kind: 'shell',
      user: 'user',
      nogui: false,
      command: 'echo a:b c',
    });
    expect(() => parseVmCommand('no user here')).toThrow(QrexecProtocolError);
    expect(() => parseVmCommand('user:QUBESRPC a.B+')).toThrow(QrexecProtocolError);
  });
});

describe('PortAllocator', () => {
  it('hands out any free port toward dom0, from 513', () => {
    const ports = new PortAllocator(5);
    expect([ports.allocate(0), ports.allocate(0), ports.allocate(0)]).toEqual([513, 514, 515]);
    expect(ports.release(514, 0)).toBe(true);
    expect(ports.allocate(0)).toBe(514);
  });

  it('uses odd offsets toward a larger domain id and even ones toward a smaller', () => {
    const ports = new PortAllocator(5);
    expect([ports.allocate(7), ports.allocate(7)]).toEqual([514, 516]);
    expect([ports.allocate(3), ports.allocate(3)]).toEqual([513, 515]);
  });

  it('ignores a release naming another peer, and runs out after 256 ports', () => {
    const ports = new PortAllocator(1);
    expect(ports.allocate(0)).toBe(513);
    expect(ports.release(513, 9)).toBe(false);
    expect(ports.isInUse(513)).toBe(true);
    for (let i = 1; i < 256; i++) expect(ports.allocate(0)).toBe(513 + i);
    expect(ports.allocate(0)).toBeUndefined();
  });
});

describe('policy response', () => {
  it('reads an allow response', () => {
    expect(
      parsePolicyResponse('user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=work\n'),
    ).toEqual({ result: 'allow', user: 'DEFAULT', target: 'dom0', requestedTarget: 'work', autostart: true });
  });

  it('reads a deny response', () => {
    expect(parsePolicyResponse('result=deny\n')).toEqual({ result: 'deny' });
  });

  it('rejects inconsistent responses', () => {
    expect(() => parsePolicyResponse('result=deny\ntarget=dom0\n')).toThrow();
    expect(() => parsePolicyResponse('result=allow\ntarget=dom0\n')).toThrow(/without user/);
    expect(() =>
      parsePolicyResponse('user=a\nresult=allow\ntarget=b\nrequested_target=b\nautostart=maybe'),
    ).toThrow();
    expect(() => parsePolicyResponse('result=allow\nresult=deny')).toThrow(/duplicate/);
    expect(() => parsePolicyResponse('')).toThrow();
  });

  it('knows the names of dom0', () => {
    expect(['dom0', '@adminvm', 'uuid:00000000-0000-0000-0000-000000000000'].every(targetIsDom0)).toBe(true);
    expect(targetIsDom0('work')).toBe(false);
  });
});
