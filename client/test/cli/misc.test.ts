import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { runQvm, runQvmRecorded, type QvmOptions } from '../helpers/run-qvm.js';
import { SYSTEM } from '../fixtures/system.js';
import { event, req } from '../fixtures/wire.js';

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget({
    ...SYSTEM,
    [req('admin.Events', '', 'dom0')]: {
      chunks: [
        '1\0\0connection-established\0\x001\0work\0prop',
        'erty-set:memory\0name\0memory\0newvalue\0',
        '600\0oldvalue\x00400\0\0',
        event('', 'domain-add', { vm: 'ev1' }),
      ],
      repeat: event('work', 'domain-qdb-change:/x', { path: '/x' }),
    },
  });
});
afterAll(() => target.close());

const run = (args: string[], options?: QvmOptions) => runQvmRecorded(target, args, options);

describe('qvm labels', () => {
  it('lists labels with their colours', async () => {
    const { code, stdout, requests } = await run(['labels']);
    expect(code).toBe(0);
    expect(stdout).toBe(
      'red     0xcc0000\norange  0xf57900\nyellow  0xedd400\ngreen   0x73d216\n' +
        'gray    0x555555\nblue    0x3465a4\npurple  0x75507b\nblack   0x000000\n',
    );
    expect(requests.slice(0, 2)).toEqual([
      'admin.label.List+ dom0 name dom0\0',
      'admin.label.Get+red dom0 name dom0\0',
    ]);
  });

  it('creates and removes custom labels', async () => {
    expect((await run(['labels', 'create', 'mylabel', '0x123456'])).requests).toEqual([
      'admin.label.Create+mylabel dom0 name dom0\x000x123456',
    ]);
    expect(await run(['labels', 'remove', 'red'])).toMatchObject({
      code: 1,
      stderr: 'Can only remove custom labels\n',
      requests: ['admin.label.Remove+red dom0 name dom0\0'],
    });
  });
});

describe('qvm events', () => {
  it('prints one event per line, whatever the chunking', async () => {
    const { code, stdout, requests } = await run(['events', '--count', '4']);
    expect(code).toBe(0);
    expect(stdout).toBe(
      '- connection-established\n' +
        'work property-set:memory name=memory newvalue=600 oldvalue=400\n' +
        '- domain-add vm=ev1\n' +
        'work domain-qdb-change:/x path=/x\n',
    );
    expect(requests).toEqual(['admin.Events+ dom0 name dom0\0']);
  });

  it('--json prints one JSON object per line', async () => {
    const lines = (await run(['--json', 'events', '--count', '2'])).stdout.trim().split('\n');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { subject: '', event: 'connection-established', kwargs: {} },
      {
        subject: 'work',
        event: 'property-set:memory',
        kwargs: { name: 'memory', newvalue: '600', oldvalue: '400' },
      },
    ]);
  });
});

describe('qvm notes', () => {
  it('prints and sets notes', async () => {
    expect(await run(['notes', 'work'])).toMatchObject({ code: 0, stdout: 'first line\nsecond line\n' });
    expect((await run(['notes', 'work', '--set', 'new notes'])).requests).toEqual([
      'admin.vm.List+ dom0 name dom0\0',
      'admin.vm.notes.Set+ dom0 name work\0new notes',
    ]);
  });
});

describe('qvm volume / pool', () => {
  it('lists a qube’s volumes and shows one, in qvm-volume’s formats', async () => {
    const list = await run(['volume', 'list', 'newvm']);
    expect(list.stdout).toBe(
      'POOL:VOLUME                       VMNAME  VOLUME_NAME  REVERT_POSSIBLE\n' +
        'varlibqubes:appvms/newvm/private  newvm   private      Yes\n' +
        'varlibqubes:appvms/newvm/root     newvm   root         No\n',
    );
    const info = await run(['volume', 'info', 'newvm:private']);
    expect(info.stdout).toBe(
      'pool               varlibqubes\n' +
        'vid                appvms/newvm/private\n' +
        'rw                 True\n' +
        'source             \n' +
        'save_on_stop       True\n' +
        'snap_on_start      False\n' +
        'size               2147483648\n' +
        'usage              0\n' +
        'revisions_to_keep  1\n' +
        'ephemeral          False\n' +
        'is_outdated        False\n' +
        'List of available revisions (for revert):\n' +
        '  1\n' +
        '  2\n',
    );
    expect(info.requests).toEqual([
      'admin.vm.List+ dom0 name dom0\0',
      'admin.vm.volume.List+ dom0 name newvm\0',
      'admin.vm.volume.Info+private dom0 name newvm\0',
      'admin.vm.volume.ListSnapshots+private dom0 name newvm\0',
    ]);
    expect((await run(['volume', 'info', 'newvm:private', 'revisions'])).stdout).toBe('1\n2\n');
  });

  it('resizes with upstream’s size units, refusing to shrink without --force', async () => {
    expect(await run(['volume', 'extend', 'newvm:private', '3GiB'])).toMatchObject({
      code: 0,
      requests: [
        'admin.vm.List+ dom0 name dom0\0',
        'admin.vm.volume.List+ dom0 name newvm\0',
        'admin.vm.volume.Info+private dom0 name newvm\0',
        'admin.vm.volume.Resize+private dom0 name newvm\x003221225472',
      ],
    });
    const shrink = await run(['volume', 'resize', 'newvm:private', '1G']);
    expect(shrink.code).toBe(1);
    expect(shrink.stderr).toMatch(
      /^Refusing to shrink volume newvm:private from 2147483648 to 1000000000 bytes\./,
    );
    expect(shrink.requests.at(-1)).toBe('admin.vm.volume.Info+private dom0 name newvm\0');
    expect(await run(['volume', 'resize', 'newvm:private', '3 lots'])).toMatchObject({
      code: 1,
      stderr: 'Invalid size: 3 lots.\n',
    });
  });

  it('lists pools with their driver', async () => {
    expect((await run(['pool', 'list'])).stdout).toBe(
      'NAME          DRIVER\nvarlibqubes   file\nlinux-kernel  linux-kernel\n',
    );
    expect(JSON.parse((await run(['--json', 'pool', 'info', 'linux-kernel'])).stdout)).toEqual({
      dir_path: '/var/lib/qubes/vm-kernels',
      driver: 'linux-kernel',
      name: 'linux-kernel',
      included_in: 'varlibqubes',
    });
  });
});

describe('qvm in general', () => {
  it('prints errors as JSON on stderr with --json', async () => {
    expect(await run(['--json', 'prefs', 'work', 'memory', '--', '-1'])).toMatchObject({
      code: 1,
      stdout: '',
      stderr: '{"error":{"type":"QubesPropertyValueError","message":"memory must be positive"}}\n',
    });
  });

  it('exits 2 on usage errors and 0 on --help', async () => {
    expect(await run(['frobnicate'])).toMatchObject({
      code: 2,
      stderr: "error: unknown command 'frobnicate'\n",
    });
    expect(await run(['prefs'])).toMatchObject({
      code: 2,
      stderr: "error: missing required argument 'vm'\n",
    });
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: qvm \[options\] \[command\]/);
  });

  it('says which socket it could not reach', async () => {
    const missing = `${target.socketPath}.missing`;
    const result = await runQvm(target, ['--socket', missing, 'ls']);
    expect(result).toEqual({
      code: 1,
      stdout: '',
      stderr: `Cannot reach qubesd: connect ENOENT ${missing}\n`,
    });
  });

  it('uses $ODYSSEY_SOCKET when --socket is not given, and the qrexec client with --qrexec', async () => {
    const { runCli } = await import('../../src/cli/run.js');
    let stdout = '';
    let stderr = '';
    const io = (env: Record<string, string>) => ({
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      stdin: process.stdin,
      env,
    });
    expect(await runCli(['ls', '--raw-list'], io({ ODYSSEY_SOCKET: target.socketPath }))).toBe(0);
    expect(stdout).toBe('debian-12\ndom0\nnewvm\nsys-net\nwork\n');
    expect(
      await runCli(['--qrexec', 'ls'], io({ ODYSSEY_QREXEC_CLIENT: '/nonexistent/qrexec-client-vm' })),
    ).toBe(1);
    expect(stderr).toMatch(/^Service call error: .*ENOENT/);
  });
});
