import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findService, serviceDescriptor, serviceEnvironment } from '../src/index.js';

let root: string;
let first: string;
let second: string;
let server: Server | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'qrexec-lookup-'));
  first = join(root, 'run');
  second = join(root, 'etc');
  await mkdir(first);
  await mkdir(second);
});

afterEach(async () => {
  server?.close();
  server = undefined;
  await rm(root, { recursive: true, force: true });
});

describe('findService', () => {
  it('prefers SERVICE+ARG in any directory over SERVICE, and earlier directories first', async () => {
    await writeFile(join(first, 'a.B'), '');
    await writeFile(join(second, 'a.B+x'), '');
    expect(await findService([first, second], 'a.B+x')).toEqual({
      kind: 'executable',
      path: join(second, 'a.B+x'),
    });
    expect(await findService([first, second], 'a.B+y')).toEqual({
      kind: 'executable',
      path: join(first, 'a.B'),
    });
    await writeFile(join(second, 'a.B'), '');
    expect(await findService([second, first], 'a.B+')).toEqual({
      kind: 'executable',
      path: join(second, 'a.B'),
    });
    expect(await findService([first, second], 'c.D')).toBeUndefined();
  });

  it('finds socket services through symlinks', async () => {
    const socketPath = join(root, 'qubesd.sock');
    const listening = createServer();
    server = listening;
    await new Promise<void>((resolve) => listening.listen(socketPath, resolve));
    await symlink(socketPath, join(second, 'admin.vm.List'));
    expect(await findService([first, second], 'admin.vm.List+')).toEqual({
      kind: 'socket',
      path: join(second, 'admin.vm.List'),
    });
  });

  it('never looks outside the directories', async () => {
    expect(await findService([first], '../etc/x')).toBeUndefined();
  });
});

describe('service descriptor and environment', () => {
  it('writes dom0 descriptors with name or keyword targets, and VM descriptors without', () => {
    expect(serviceDescriptor({ serviceAndArg: 'svc+arg', source: 'work', requestedTarget: 'dom0' })).toBe(
      'svc+arg work name dom0\0',
    );
    expect(
      serviceDescriptor({ serviceAndArg: 'admin.vm.List+', source: 'mgmt', requestedTarget: '@adminvm' }),
    ).toBe('admin.vm.List+ mgmt keyword adminvm\0');
    expect(serviceDescriptor({ serviceAndArg: 'qubes.Filecopy+', source: 'work' })).toBe(
      'qubes.Filecopy+ work\0',
    );
  });

  it('sets the QREXEC_* variables and strips inherited ones', () => {
    const base = { PATH: '/bin', QREXEC_STALE: 'x', QREXEC_SERVICE_PATH: '/p', QREXEC_AGENT_PID: '1' };
    expect(
      serviceEnvironment(base, { serviceAndArg: 'a.B+c', source: 'work', requestedTarget: '@dispvm:d' }),
    ).toEqual({
      PATH: '/bin',
      QREXEC_SERVICE_PATH: '/p',
      QREXEC_AGENT_PID: '1',
      QREXEC_SERVICE_FULL_NAME: 'a.B+c',
      QREXEC_REMOTE_DOMAIN: 'work',
      QREXEC_SERVICE_ARGUMENT: 'c',
      QREXEC_REQUESTED_TARGET_TYPE: 'keyword',
      QREXEC_REQUESTED_TARGET_KEYWORD: 'dispvm:d',
    });
    expect(serviceEnvironment({}, { serviceAndArg: 'a.B', source: 'dom0' })).toEqual({
      QREXEC_SERVICE_FULL_NAME: 'a.B',
      QREXEC_REMOTE_DOMAIN: 'dom0',
      QREXEC_REQUESTED_TARGET_TYPE: '',
    });
  });
});
