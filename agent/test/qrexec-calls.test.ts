import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CALL_OUTPUT_LIMIT } from '@odyssey/qrexec';
import { allowTo, QrexecWorld } from './fixture.js';

let world: QrexecWorld;

beforeEach(async () => {
  world = await QrexecWorld.create();
  await world.addDomain('work', 3);
  await world.addDomain('personal', 5);
});

afterEach(async () => {
  await world.close();
});

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('qrexec through the daemon and the agents', () => {
  it('negotiates protocol 4 with the agents', () => {
    expect(world.domain('work').daemon.protocolVersion).toBe(4);
  });

  it('runs a dom0 socket service with the descriptor, payload and exit code upstream gives', async () => {
    world.policy = allowTo('dom0');
    const service = await world.addSocketService('test.Echo', (received) =>
      Buffer.concat([Buffer.from('got:'), received]),
    );
    const result = await world.clientVm('work', 'dom0', 'test.Echo+arg', Buffer.from('payload'));
    const expected = Buffer.from('test.Echo+arg work name dom0\0payload');
    expect(await service.received).toEqual(expected);
    expect(result.stdout).toEqual(Buffer.concat([Buffer.from('got:'), expected]));
    expect(result.exitCode).toBe(0);
    expect(world.requests).toEqual([{ source: 'work', target: 'dom0', serviceAndArg: 'test.Echo+arg' }]);
  });

  it('tells a dom0 socket service the redirected target and keyword targets', async () => {
    const service = await world.addSocketService('admin.vm.List', () => Buffer.from('ok'));
    world.policy = async () => ({
      result: 'allow',
      user: 'DEFAULT',
      target: 'dom0',
      requestedTarget: '@adminvm',
      autostart: true,
    });
    const result = await world.clientVm('work', '$adminvm', 'admin.vm.List', Buffer.alloc(0));
    expect((await service.received).toString()).toBe('admin.vm.List+ work keyword adminvm\0');
    expect(world.requests[0]?.target).toBe('@adminvm');
    expect(result.stdout.toString()).toBe('ok');
  });

  it('refuses a denied call with exit code 126', async () => {
    world.policy = async () => ({ result: 'deny' });
    const result = await world.clientVm('work', 'dom0', 'test.Echo', Buffer.from('x'));
    expect(result.exitCode).toBe(126);
    expect(result.stderr).toBe('Request refused\n');
  });

  it('refuses a loopback call even when the policy allows it', async () => {
    world.policy = allowTo('work');
    const result = await world.clientVm('work', 'work', 'test.Cat', Buffer.from('x'));
    expect(result.exitCode).toBe(126);
  });

  it('connects two domains for a VM-to-VM call to an executable service', async () => {
    const personal = world.domain('personal');
    await world.addScript(
      personal.serviceDir,
      'test.Cat',
      '#!/bin/sh\nprintf "%s %s %s" "$QREXEC_REMOTE_DOMAIN" "$QREXEC_SERVICE_FULL_NAME" "$1" >&2\ncat\n',
    );
    world.policy = allowTo('personal');
    const result = await world.clientVm('work', 'personal', 'test.Cat+an-arg', Buffer.from('hello personal'));
    expect(result.stdout.toString()).toBe('hello personal');
    expect(result.stderr).toBe('work test.Cat+an-arg an-arg');
    expect(result.exitCode).toBe(0);
  });

  it("passes the remote service's exit code through", async () => {
    await world.addScript(world.domain('personal').serviceDir, 'test.Fail', '#!/bin/sh\nexit 42\n');
    world.policy = allowTo('personal');
    expect((await world.clientVm('work', 'personal', 'test.Fail', Buffer.alloc(0))).exitCode).toBe(42);
  });

  it('reports a missing service as 127, in a VM and in dom0', async () => {
    world.policy = allowTo('personal');
    expect((await world.clientVm('work', 'personal', 'no.Such', Buffer.alloc(0))).exitCode).toBe(127);
    world.policy = allowTo('dom0');
    expect((await world.clientVm('work', 'dom0', 'no.Such', Buffer.alloc(0))).exitCode).toBe(127);
  });

  it('refuses a call to a domain that has no daemon', async () => {
    world.policy = allowTo('halted');
    expect((await world.clientVm('work', 'halted', 'test.Cat', Buffer.alloc(0))).exitCode).toBe(126);
  });

  it('moves several MiB through a VM-to-VM data phase intact', async () => {
    await world.addScript(world.domain('personal').serviceDir, 'test.Cat', '#!/bin/sh\ncat\n');
    world.policy = allowTo('personal');
    const payload = randomBytes(8 * 1024 * 1024);
    const result = await world.clientVm('work', 'personal', 'test.Cat', payload);
    expect(result.stdout.length).toBe(payload.length);
    expect(sha256(result.stdout)).toBe(sha256(payload));
  });

  it('moves several MiB to a dom0 executable service intact', async () => {
    await world.addScript(
      world.dom0ServiceDir,
      'test.Sum',
      '#!/bin/sh\nprintf "%s %s|" "$QREXEC_REQUESTED_TARGET_TYPE" "$QREXEC_REQUESTED_TARGET"\nsha256sum | cut -d" " -f1\n',
    );
    world.policy = allowTo('dom0');
    const payload = randomBytes(6 * 1024 * 1024 + 17);
    const result = await world.clientVm('work', 'dom0', 'test.Sum', payload);
    expect(result.stdout.toString()).toBe(`name dom0|${sha256(payload)}\n`);
  });

  it('lets dom0 call a service in a domain', async () => {
    await world.addScript(
      world.domain('work').serviceDir,
      'test.Who',
      '#!/bin/sh\necho "from $QREXEC_REMOTE_DOMAIN: $(cat)"\necho oops >&2\nexit 3\n',
    );
    const result = await world.domain('work').daemon.callService('test.Who', { stdin: Buffer.from('hi') });
    expect(result).toEqual({
      stdout: Buffer.from('from dom0: hi\n'),
      stderr: Buffer.from('oops\n'),
      exitCode: 3,
    });
  });

  it("keeps at most the limit of what a domain's service writes to dom0, and still runs it to its end", async () => {
    await world.addScript(
      world.domain('work').serviceDir,
      'test.Flood',
      '#!/bin/sh\nhead -c 3000000 /dev/zero\nhead -c 5000 /dev/zero | tr "\\0" e >&2\necho done >&2\nexit 4\n',
    );
    const result = await world.domain('work').daemon.callService('test.Flood', { maxOutputBytes: 4096 });
    expect(result.stdout).toEqual(Buffer.alloc(4096));
    expect(result.stderr).toEqual(Buffer.alloc(4096, 'e'));
    expect(result.exitCode).toBe(4);
    const byDefault = await world.domain('work').daemon.callService('test.Flood');
    expect(byDefault.stdout).toEqual(Buffer.alloc(CALL_OUTPUT_LIMIT));
    expect(byDefault.stderr.toString()).toBe(`${'e'.repeat(5000)}done\n`);
  });

  it('frees data ports so that many calls in a row succeed', async () => {
    await world.addScript(world.domain('work').serviceDir, 'test.Echo', '#!/bin/sh\ncat\n');
    const daemon = world.domain('work').daemon;
    for (let i = 0; i < 300; i++) {
      const result = await daemon.callService('test.Echo', { stdin: Buffer.from(`call ${i}`) });
      expect(result.stdout.toString()).toBe(`call ${i}`);
    }
  }, 60_000);
});
