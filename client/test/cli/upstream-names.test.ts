import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { UPSTREAM_NAMES } from '../../src/cli/upstream-names.js';
import { startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { runQvmRecorded, type QvmOptions } from '../helpers/run-qvm.js';
import { SYSTEM } from '../fixtures/system.js';

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget(SYSTEM);
});
afterAll(() => target.close());

const run = (args: string[], options?: QvmOptions) => runQvmRecorded(target, args, options);

describe("upstream's command names", () => {
  it.each([
    ['qvm-prefs', ['work', 'memory'], ['prefs', 'work', 'memory']],
    ['qvm-prefs', ['--hide-default', 'work'], ['prefs', '--hide-default', 'work']],
    ['qubes-prefs', [], ['global-prefs']],
    ['qvm-ls', ['--raw-list'], ['ls', '--raw-list']],
    ['qvm-features', ['work'], ['features', 'work']],
    ['qvm-check', ['--running', 'work'], ['check', '--running', 'work']],
    ['qvm-pool', [], ['pool']],
  ])('%s %j does what qvm %j does, byte for byte and call for call', async (name, args, qvmArgs) => {
    const asQvm = await run(qvmArgs);
    expect(asQvm.code).toBe(0);
    expect(asQvm.requests).not.toEqual([]);
    expect(await run(args, { invokedAs: name })).toEqual(asQvm);
  });

  it('gives the same usage error as the subcommand', async () => {
    const asQvm = await run(['prefs']);
    expect(asQvm).toMatchObject({ code: 2, requests: [] });
    expect(await run([], { invokedAs: 'qvm-prefs' })).toEqual(asQvm);
  });

  it('names itself in its help, with the options every command takes', async () => {
    const { code, stdout } = await run(['--help'], { invokedAs: 'qvm-ls' });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: qvm-ls \[options\] \[vm\.\.\.\]\n/);
    expect(stdout).toContain('--raw-list');
    expect(stdout).toContain('--socket <path>');
    const pool = await run(['add', '--help'], { invokedAs: 'qvm-pool' });
    expect(pool.stdout).toMatch(/^Usage: qvm-pool add \[options\] <name> <driver>\n/);
  });

  it('says a name whose subcommand qvm lacks is not supported, exit 2, without calling qubesd', async () => {
    const missing = Object.keys(UPSTREAM_NAMES).filter((name) =>
      ['device', 'backup'].includes(UPSTREAM_NAMES[name] ?? ''),
    );
    expect(missing).toHaveLength(2);
    for (const name of missing) {
      expect(await run(['work'], { invokedAs: name })).toEqual({
        code: 2,
        stdout: '',
        stderr: `${name}: not supported yet (qvm has no '${UPSTREAM_NAMES[name]}' command)\n`,
        requests: [],
      });
    }
  });

  it('is plain qvm under any other name (the entry file itself, a renamed link)', async () => {
    const asQvm = await run(['ls', '--raw-list']);
    expect(await run(['ls', '--raw-list'], { invokedAs: 'main.js' })).toEqual(asQvm);
    expect((await run(['--help'], { invokedAs: 'main.js' })).stdout).toMatch(
      /^Usage: qvm \[options\] \[command\]\n/,
    );
  });
});
