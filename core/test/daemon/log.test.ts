import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

import { afterEach, describe, expect, it } from 'vitest';

import { adminCallLine } from '../../src/api/call-log.js';
import { stderrLog } from '../../src/daemon/log.js';
import { rawCall, request } from '../support/harness.js';
import type { SpawnedDaemon } from '../support/spawn.js';
import { cleanUp, ODYSSEYD, spawnDaemon } from '../support/spawn.js';

const run = promisify(execFile);

const started: SpawnedDaemon[] = [];
afterEach(() => cleanUp(started.splice(0)));

/** A stream that keeps what is written to it. */
function capture(isTTY: boolean): { isTTY: boolean; text: string; write(s: string): boolean } {
  return {
    isTTY,
    text: '',
    write(s: string) {
      this.text += s;
      return true;
    },
  };
}

describe('odysseyd logs', () => {
  it('start each line with its journald priority when stderr is not a terminal', () => {
    const out = capture(false);
    const log = stderrLog('debug', out);
    log('error', 'e');
    log('warn', 'w');
    log('info', 'first\nsecond');
    log('debug', 'd');
    expect(out.text).toBe(
      '<3>odysseyd: error: e\n<4>odysseyd: warn: w\n' +
        '<6>odysseyd: info: first\n<6>second\n<7>odysseyd: debug: d\n',
    );
  });

  it('keep the plain format on a terminal, and drop what is below the level', () => {
    const out = capture(true);
    const log = stderrLog('warn', out);
    log('info', 'hidden');
    log('warn', 'shown');
    expect(out.text).toBe('odysseyd: warn: shown\n');
  });

  it('log every call from a domain other than dom0 with source, method, destination, argument and decision', async () => {
    const d = await spawnDaemon();
    started.push(d);
    const call = (method: string, dest: string, arg = '', payload = '', src = 'dom0') =>
      rawCall(d.socket, request(method, dest, arg, payload, src)).then((b) => b.toString('latin1'));
    expect(await call('admin.vm.Create.AppVM', 'dom0', '', 'name=work label=red')).toMatch(/^2\0/);
    expect(await call('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=red')).toBe('0\0');
    expect(await call('admin.vm.property.Get', 'work', 'label', '', 'work')).toBe(
      '0\0default=False type=label red',
    );
    await d.logged(
      '<6>odysseyd: info: admin call: source=work method=admin.vm.property.Get dest=work arg=label policy=allow result=ok\n',
    );
    expect(await call('admin.vm.feature.Get', 'work', 'nosuch', '', 'work')).toMatch(
      /^2\0QubesFeatureNotFoundError/,
    );
    await d.logged(
      'admin call: source=work method=admin.vm.feature.Get dest=work arg=nosuch policy=allow result=QubesFeatureNotFoundError\n',
    );
    // dom0's own calls are not logged.
    expect(d.stderr()).not.toMatch(/admin call: source=dom0/);
  });

  it('odysseyd --version prints the version of package.json', async () => {
    const { version } = JSON.parse(
      await readFile(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    const { stdout } = await run(process.execPath, [ODYSSEYD, '--version']);
    expect(stdout).toBe(`${version}\n`);
  });
});

describe('the admin call log line', () => {
  it("keeps a caller's control characters on its one line, as \\xNN", () => {
    const line = adminCallLine(
      { src: 'work', method: 'admin.vm.feature.Get', dest: 'work', arg: 'x\n<3>odysseyd: error: forged\r' },
      'allow',
      'result=ok',
    );
    expect(line).toBe(
      'admin call: source=work method=admin.vm.feature.Get dest=work arg=x\\x0a<3>odysseyd: error: forged\\x0d policy=allow result=ok',
    );
    expect(line).not.toMatch(/[\n\r]/);
  });
});
