import { connect } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FakeQubesd, cannedResponder, startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { startOdysseyd, type Odysseyd } from '../helpers/odysseyd.js';
import { runQvm, runQvmRecorded } from '../helpers/run-qvm.js';
import { SYSTEM, VM_LIST } from '../fixtures/system.js';
import { ok, req } from '../fixtures/wire.js';

const BULK = 'admin.odyssey.vm.ListWithProperties';
const BULK_REQUEST = `${BULK}+ dom0 name dom0\0`;

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget(SYSTEM);
});
afterAll(() => target.close());

const run = (args: string[]) => runQvmRecorded(target, args);

const DEFAULT_TABLE =
  'NAME       STATE    CLASS       LABEL  TEMPLATE   NETVM\n' +
  'debian-12  Halted   TemplateVM  black  -          -\n' +
  'dom0       Running  AdminVM     black  -          -\n' +
  'newvm      Halted   AppVM       green  debian-12  sys-net\n' +
  'sys-net    Running  AppVM       red    debian-12  -\n' +
  'work       Paused   AppVM       blue   debian-12  sys-net\n';

/**
 * The bulk reply odysseyd would give for SYSTEM: each List line, that qube's GetAll body (taken from the
 * same canned replies), an empty line. sys-net's GetAll is refused there, so its block has no properties.
 */
function bulkBody(): string {
  return VM_LIST.split('\n')
    .filter(Boolean)
    .map((line) => {
      const getAll = SYSTEM[req('admin.vm.property.GetAll', '', line.split(' ')[0] as string)] as string;
      return `${line}\n${getAll.slice(2)}\n`;
    })
    .join('');
}

/** SYSTEM with the bulk call answered by `reply`, recording what `qvm ls` asks. */
async function withBulk(reply: string, args: string[]) {
  const server = await FakeQubesd.start(cannedResponder({ ...SYSTEM, [BULK_REQUEST]: reply }));
  try {
    return await runQvmRecorded(server, args);
  } finally {
    await server.close();
  }
}

describe('qvm ls', () => {
  it('prints the qvm-ls default table from List + one GetAll per qube, in name order', async () => {
    const { code, stdout, stderr, requests } = await run(['ls']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(DEFAULT_TABLE);
    expect(requests).toEqual([
      // Refused as upstream's qubesd refuses a method it lacks: List and a call per qube instead.
      BULK_REQUEST,
      'admin.vm.List+ dom0 name dom0\0',
      'admin.vm.property.GetAll+ dom0 name debian-12\0',
      'admin.vm.property.GetAll+ dom0 name dom0\0',
      'admin.vm.property.GetAll+ dom0 name newvm\0',
      // Empty GetAll reply: one Get per needed property instead.
      'admin.vm.property.GetAll+ dom0 name sys-net\0',
      'admin.vm.property.Get+label dom0 name sys-net\0',
      'admin.vm.property.Get+template dom0 name sys-net\0',
      'admin.vm.property.Get+netvm dom0 name sys-net\0',
      'admin.vm.property.GetAll+ dom0 name work\0',
    ]);
  });

  it("takes every qube's properties from odysseyd's bulk call, asking per qube only for one it withheld", async () => {
    const { code, stdout, stderr, requests } = await withBulk(ok(bulkBody()), ['ls']);
    expect({ code, stderr, stdout }).toEqual({ code: 0, stderr: '', stdout: DEFAULT_TABLE });
    expect(requests).toEqual([
      BULK_REQUEST,
      'admin.vm.property.GetAll+ dom0 name sys-net\0',
      'admin.vm.property.Get+label dom0 name sys-net\0',
      'admin.vm.property.Get+template dom0 name sys-net\0',
      'admin.vm.property.Get+netvm dom0 name sys-net\0',
    ]);
    const json = await withBulk(ok(bulkBody()), ['--json', 'ls']);
    expect(json).toMatchObject({ code: 0, stdout: (await run(['--json', 'ls'])).stdout });
  });

  it('falls back to List and a call per qube when the bulk call is refused by the qrexec policy', async () => {
    const refused = await withBulk('', ['ls']);
    const upstream = await run(['ls']);
    expect(refused).toEqual(upstream);
    expect(refused.requests[0]).toBe(BULK_REQUEST);
  });

  it('rejects a bulk reply that does not end its last block', async () => {
    const { code, stderr } = await withBulk(ok(bulkBody().slice(0, -1)), ['ls']);
    expect(code).not.toBe(0);
    expect(stderr).toContain('Invalid VM list with properties received');
  });

  it('--raw-list prints names only, from admin.vm.List alone', async () => {
    const { code, stdout, requests } = await run(['ls', '--raw-list']);
    expect(code).toBe(0);
    expect(stdout).toBe('debian-12\ndom0\nnewvm\nsys-net\nwork\n');
    expect(requests).toEqual(['admin.vm.List+ dom0 name dom0\0']);
  });

  it('takes columns, qube names and state filters', async () => {
    const { stdout } = await run(['ls', '--fields', 'name,memory,class', 'work', 'debian-12']);
    expect(stdout).toBe(
      'NAME       MEMORY  CLASS\ndebian-12  400     TemplateVM\nwork       600     AppVM\n',
    );
    const raw = await run(['ls', '--raw-data', '-O', 'name,state', '--running']);
    expect(raw.stdout).toBe('dom0|Running\nsys-net|Running\n');
  });

  it('rejects an unknown qube as a usage error', async () => {
    const { code, stderr } = await run(['ls', 'nosuch']);
    expect(code).toBe(2);
    expect(stderr).toBe("error: no such domain: 'nosuch'\n");
  });

  it('--json gives typed values and null for what is absent', async () => {
    const { stdout } = await run(['--json', 'ls', 'work', 'dom0']);
    expect(JSON.parse(stdout)).toEqual([
      { name: 'dom0', state: 'Running', class: 'AdminVM', label: 'black', template: null, netvm: null },
      {
        name: 'work',
        state: 'Paused',
        class: 'AppVM',
        label: 'blue',
        template: 'debian-12',
        netvm: 'sys-net',
      },
    ]);
  });

  it("takes upstream's --class, --all/--exclude, --sort and --reverse", async () => {
    expect((await run(['ls', '--raw-list', '--class', 'AppVM', 'TemplateVM'])).stdout).toBe(
      'debian-12\nnewvm\nsys-net\nwork\n',
    );
    expect((await run(['ls', '--raw-list', '--all', '--exclude', 'work', '--exclude', 'dom0'])).stdout).toBe(
      'debian-12\nnewvm\nsys-net\n',
    );
    expect((await run(['ls', '-O', 'name,label', '--sort', 'label', '--reverse'])).stdout).toBe(
      'NAME       LABEL\n' +
        'sys-net    red\n' +
        'newvm      green\n' +
        'work       blue\n' +
        'debian-12  black\n' +
        'dom0       black\n',
    );
    expect(await run(['ls', '--exclude', 'work'])).toMatchObject({
      code: 2,
      stderr: 'error: --exclude can only be used with --all\n',
      requests: [],
    });
  });
});

/** Relays one request to a real daemon's socket and returns its reply, unchanged. */
function relay(socketPath: string, raw: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(socketPath, () => socket.end(raw));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

describe('qvm ls against a real odysseyd', () => {
  let d: Odysseyd;
  let withoutBulk: FakeQubesd;
  beforeAll(async () => {
    d = await startOdysseyd();
    // The same daemon with the bulk method refused, as the qrexec policy refuses it: an empty reply.
    withoutBulk = await FakeQubesd.start((request) =>
      request.method === BULK ? '' : relay(d.socketPath, request.raw),
    );
    await d.client.vms.create({ klass: 'StandaloneVM', name: 'alpha', label: 'red' });
    await d.client.vms.create({ klass: 'TemplateVM', name: 'tpl', label: 'black' });
    await d.client.vms.create({ klass: 'AppVM', name: 'beta', label: 'blue', template: 'tpl' });
    await d.client.vmProperties('alpha').set('provides_network', 'True');
    await d.client.vmProperties('beta').set('netvm', 'alpha');
    await d.client.vmProperties('alpha').set('kernelopts', 'x\\y');
  });
  afterAll(async () => {
    await withoutBulk?.close();
    await d?.stop();
  });

  it('prints the same with and without the bulk method', async () => {
    for (const args of [
      ['ls'],
      ['ls', '-O', 'name,state,class,label,template,netvm,memory,maxmem,vcpus,kernelopts,uuid,qid'],
      ['--json', 'ls', '-O', 'name,provides_network,virt_mode,default_user'],
      ['ls', '--halted', '--sort', 'label'],
    ]) {
      const bulk = await runQvm(d, args);
      expect(bulk).toMatchObject({ code: 0, stderr: '' });
      expect(bulk.stdout).toContain('beta');
      expect(await runQvm(withoutBulk, args)).toEqual(bulk);
    }
    // A value GetAll escapes comes through the bulk reply unescaped.
    expect((await runQvm(d, ['--json', 'ls', '-O', 'name,kernelopts'])).stdout).toContain(
      '"kernelopts":"x\\\\y"',
    );
    expect(withoutBulk.requestStrings().filter((r) => r.startsWith('admin.vm.property.GetAll+'))).not.toEqual(
      [],
    );
  });
});
