import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AdminClient, QrexecTransport, QubesDaemonAccessError, QubesVMNotFoundError } from '../src/index.js';

/**
 * A stand-in for qrexec-client-vm: logs its argv and stdin, then answers like the dom0 socket service
 * would. `admin.Events` streams until killed; target `refuse` fails like a policy denial does.
 */
const FAKE_CLIENT = `#!/usr/bin/env node
const { appendFileSync } = require('node:fs');
const [target, service] = process.argv.slice(2);
const input = [];
process.stdin.on('data', (c) => input.push(c));
process.stdin.on('end', () => {
  appendFileSync(process.env.FAKE_QREXEC_LOG, JSON.stringify({ target, service, stdin: Buffer.concat(input).toString('latin1') }) + '\\n');
  if (target === 'refuse') {
    process.stderr.write('Request refused\\n');
    process.exit(126);
  }
  if (service === 'admin.vm.List') process.stdout.write('0\\0dom0 class=AdminVM state=Running\\n');
  else if (service === 'admin.vm.feature.Set+foo') process.stdout.write('0\\0');
  else if (service.startsWith('admin.vm.volume.Import')) process.stdout.write('0\\0');
  else if (service === 'admin.vm.property.Get+name') process.stdout.write("2\\0QubesVMNotFoundError\\0\\0No such domain: 'x'\\0");
  else if (service === 'admin.Events') {
    process.stdout.write('1\\0\\0connection-');
    setTimeout(() => process.stdout.write('established\\0\\0'), 20);
    setInterval(() => process.stdout.write('1\\0dom0\\0tick\\0\\0'), 20);
  }
});
`;

let dir: string;
let command: string;
let log: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-qrexec-test-'));
  command = join(dir, 'qrexec-client-vm');
  log = join(dir, 'calls.log');
  // No package.json above the temporary directory, so the script runs as CommonJS.
  await writeFile(command, FAKE_CLIENT);
  await chmod(command, 0o755);
  await writeFile(log, '');
  process.env.FAKE_QREXEC_LOG = log;
});

afterAll(async () => {
  delete process.env.FAKE_QREXEC_LOG;
  await rm(dir, { recursive: true, force: true });
});

async function calls(): Promise<{ target: string; service: string; stdin: string }[]> {
  return (await readFile(log, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { target: string; service: string; stdin: string });
}

describe('QrexecTransport', () => {
  it('runs the client with target and service, the payload on stdin', async () => {
    const client = new AdminClient(new QrexecTransport({ command }));
    expect((await client.vms.list()).map((vm) => vm.name)).toEqual(['dom0']);
    await client.features.set('work', 'foo', 'bar');
    expect((await calls()).slice(-2)).toEqual([
      { target: 'dom0', service: 'admin.vm.List', stdin: '' },
      { target: 'work', service: 'admin.vm.feature.Set+foo', stdin: 'bar' },
    ]);
  });

  it('maps exception replies like the socket transport', async () => {
    const client = new AdminClient(new QrexecTransport({ command }));
    await expect(client.vmProperties('x').get('name')).rejects.toBeInstanceOf(QubesVMNotFoundError);
  });

  it('turns a non-zero exit into a service call error', async () => {
    const client = new AdminClient(new QrexecTransport({ command }));
    const failure = client.vms.list('refuse');
    await expect(failure).rejects.toBeInstanceOf(QubesDaemonAccessError);
    await expect(client.vms.list('refuse')).rejects.toThrow('Service call error: Request refused');
  });

  it('reports a missing client program', async () => {
    const client = new AdminClient(new QrexecTransport({ command: join(dir, 'missing') }));
    await expect(client.vms.list()).rejects.toThrow(/^Service call error: .*ENOENT/);
  });

  it('streams events and stops the client when the caller is done', async () => {
    const client = new AdminClient(new QrexecTransport({ command }));
    const received = [];
    for await (const e of client.events()) {
      received.push(e.event);
      if (received.length === 3) break;
    }
    expect(received).toEqual(['connection-established', 'tick', 'tick']);
  });

  it('streams an import to the service’s stdin, size line first', async () => {
    const client = new AdminClient(new QrexecTransport({ command }));
    const sent: number[] = [];
    async function* chunks() {
      yield Buffer.from('hel');
      yield Buffer.from('lo');
    }
    await client.volumes.import('work', 'private', chunks(), {
      size: 5,
      withSize: true,
      onProgress: (n) => sent.push(n),
    });
    await client.volumes.importData('work', 'root', Buffer.from('abc'));
    expect((await calls()).slice(-2)).toEqual([
      { target: 'work', service: 'admin.vm.volume.ImportWithSize+private', stdin: '5\nhello' },
      { target: 'work', service: 'admin.vm.volume.Import+root', stdin: 'abc' },
    ]);
    expect(sent).toEqual([3, 5]);
  });
});
