import { createServer, type Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/policy/cli.js';
import { A, T } from './fixtures.js';
import { TempTree } from './tmp.js';

let tree: TempTree;
let server: Server | undefined;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  tree.remove();
});

function listen(s: Server, socket: string): Promise<void> {
  return new Promise((resolve) => s.listen(socket, resolve));
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['node', 'odyssey-policy', ...args], {
    out: (t) => (out += t),
    err: (t) => (err += t),
  });
  return { code, out, err };
}

function setup(policy: string, info: unknown = T): { dir: string; info: string } {
  const dir = tree.mkdir('policy.d');
  tree.write('policy.d/30-test.policy', policy);
  return { dir, info: tree.write('system-info.json', JSON.stringify(info)) };
}

describe('odyssey-policy eval', () => {
  it.each([
    [
      '* * test-vm1 test-vm2 allow',
      'test-vm1',
      'test-vm2',
      'test.Service+argument',
      'allow target=test-vm2',
      0,
    ],
    ['* * test-vm1 test-vm2 allow', 'test-vm2', 'test-vm1', 'test.Service', 'deny no matching rule found', 1],
    [
      '* * @tag:tag1 test-vm3 ask default_target=test-vm3',
      'test-vm1',
      'test-vm3',
      'svc',
      'ask default_target=test-vm3',
      1,
    ],
    ['* * @tag:tag1 test-vm3 ask', 'test-vm1', 'test-vm3', 'svc', 'ask', 1],
    ['* * test-vm1 @default allow target=test-vm2', 'test-vm1', '', 'svc', 'allow target=test-vm2', 0],
    ['* * @anyvm @dispvm allow', 'test-vm3', '@dispvm', 'svc', 'allow target=@dispvm:default-dvm', 0],
  ])('%s: %s -> %s %s', async (policy, source, target, call, first, code) => {
    const { dir, info } = setup(policy);
    const r = await cli('eval', '--policy-dir', dir, '--system-info', info, source, target, call);
    expect(r).toMatchObject({ code, err: '' });
    expect(r.out.split('\n')[0]).toBe(first);
  });

  it('prints the daemon reply after the decision', async () => {
    const { dir, info } = setup('* * test-vm1 test-vm2 allow\n');
    expect(
      (await cli('eval', '--policy-dir', dir, '--system-info', info, 'test-vm1', 'test-vm2', 'svc')).out,
    ).toBe(
      'allow target=test-vm2\nuser=DEFAULT\nresult=allow\ntarget=test-vm2\ntarget_uuid=uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4\nautostart=True\nrequested_target=test-vm2\n',
    );
    expect(
      (await cli('eval', '--policy-dir', dir, '--system-info', info, 'test-vm2', 'test-vm1', 'svc')).out,
    ).toBe('deny no matching rule found\nresult=deny\n');
  });

  it('describes an ask', async () => {
    const { dir, info } = setup('* * test-vm1 @anyvm ask autostart=no default_target=test-vm2\n');
    expect(
      (await cli('eval', '--policy-dir', dir, '--system-info', info, 'test-vm1', 'test-vm2', 'svc')).out,
    ).toBe(
      [
        'ask default_target=test-vm2',
        'user=DEFAULT',
        'result=ask',
        'targets_for_ask=test-relayvm1 test-remotevm1 test-vm2 test2-relayvm1 test2-relayvm2 test2-remotevm1 test2-remotevm2 test2-vm1',
        'default_target=test-vm2',
        'autostart=False',
        'requested_target=test-vm2',
        '',
      ].join('\n'),
    );
  });

  it('a broken policy is a decision (deny, exit 1), not a usage error', async () => {
    const { dir, info } = setup('# x\n* * test-vm1 test-vm2 allow extra\n');
    const r = await cli('eval', '--policy-dir', dir, '--system-info', info, 'test-vm1', 'test-vm2', 'svc');
    const reason = `${dir}/30-test.policy:2: invalid action parameter syntax: 'extra'`;
    expect(r).toEqual({
      code: 1,
      out: `deny ${reason}\nresult=deny\n`,
      err: `odyssey-policy: policy not loaded, every call is denied: ${reason}\n`,
    });
  });

  it('an include chain too deep to load denies with its file and line, without a stack trace', async () => {
    const { dir, info } = setup('!include chain/0\n* * test-vm1 test-vm2 allow\n');
    for (let i = 0; i < 2000; i++) tree.write(`policy.d/chain/${i}`, `!include chain/${i + 1}\n`);
    tree.write('policy.d/chain/2000', '');
    const r = await cli('eval', '--policy-dir', dir, '--system-info', info, 'test-vm1', 'test-vm2', 'svc');
    const reason = `${dir}/chain/30:1: includes nested over 32 deep at ${dir}/chain/31`;
    expect(r).toEqual({
      code: 1,
      out: `deny ${reason}\nresult=deny\n`,
      err: `odyssey-policy: policy not loaded, every call is denied: ${reason}\n`,
    });
  });

  it('merges several --policy-dir, the first one winning', async () => {
    const { dir, info } = setup('* * test-vm1 test-vm2 deny\n');
    const run = tree.mkdir('run');
    tree.write('run/30-test.policy', '* * test-vm1 test-vm2 allow\n');
    const r = await cli(
      'eval',
      '--policy-dir',
      run,
      '--policy-dir',
      dir,
      '--system-info',
      info,
      'test-vm1',
      'test-vm2',
      'svc',
    );
    expect(r.out.split('\n')[0]).toBe('allow target=test-vm2');
  });

  it.each([
    [['eval', '--system-info', 'x', 'a', 'b', 'c']],
    [['eval', '--policy-dir', '/', 'a', 'b']],
    [['frobnicate']],
    [[]],
  ])('usage error %j exits 2', async (args) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).not.toBe('');
  });

  it('unreadable inputs exit 2 with a message', async () => {
    const { dir, info } = setup('* * @anyvm @anyvm deny\n');
    expect(
      await cli('eval', '--policy-dir', tree.path('nope'), '--system-info', info, 'a', 'b', 'c'),
    ).toEqual({
      code: 2,
      out: '',
      err: `odyssey-policy: policy directory ${tree.path('nope')} is not a readable directory\n`,
    });
    const r = await cli(
      'eval',
      '--policy-dir',
      dir,
      '--system-info',
      tree.path('missing.json'),
      'a',
      'b',
      'c',
    );
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^odyssey-policy: cannot read system info .*missing\.json: ENOENT/);
    const bad = tree.write('bad.json', JSON.stringify({ domains: { x: { tags: 'no' } } }));
    expect((await cli('eval', '--policy-dir', dir, '--system-info', bad, 'a', 'b', 'c')).err).toBe(
      `odyssey-policy: invalid system info ${bad}: system info: domain "x": "tags" must be a list of strings\n`,
    );
  });

  it('asks the daemon for system info when no file is given', async () => {
    const { dir } = setup('admin.vm.List * mgmtvm @adminvm allow target=dom0\n');
    const socket = tree.path('qubesd.internal.sock');
    const requests: string[] = [];
    server = createServer((conn) => {
      let data = '';
      conn.on('data', (d) => (data += d.toString()));
      conn.on('end', () => {
        requests.push(data);
        conn.end(Buffer.concat([Buffer.from('0\0'), Buffer.from(JSON.stringify(A))]));
      });
    });
    await listen(server, socket);
    const r = await cli(
      'eval',
      '--policy-dir',
      dir,
      '--daemon-socket',
      socket,
      'mgmtvm',
      'dom0',
      'admin.vm.List',
    );
    expect(r.out.split('\n')[0]).toBe('allow target=dom0');
    expect(requests).toEqual(['internal.GetSystemInfo+ dom0 name dom0\0']);
  });

  it('reports a daemon error reply and a missing daemon', async () => {
    const { dir } = setup('* * @anyvm @anyvm deny\n');
    const socket = tree.path('qubesd.internal.sock');
    server = createServer((conn) => {
      conn.on('data', () => undefined);
      conn.on('end', () => conn.end('2\0PermissionDenied\0\0Got empty response from qubesd\0'));
    });
    await listen(server, socket);
    expect(await cli('eval', '--policy-dir', dir, '--daemon-socket', socket, 'a', 'b', 'c')).toEqual({
      code: 2,
      out: '',
      err: `odyssey-policy: cannot get system info from ${socket}: PermissionDenied: Got empty response from qubesd\n`,
    });
    const none = await cli(
      'eval',
      '--policy-dir',
      dir,
      '--daemon-socket',
      tree.path('absent.sock'),
      'a',
      'b',
      'c',
    );
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/^odyssey-policy: cannot get system info from .*absent\.sock: connect ENOENT/);
  });
});
