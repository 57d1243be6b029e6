import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  askRequestOf,
  decide,
  parsePolicyText,
  POLICY_ASK_HEADER,
  settleAsk,
  type AskDecision,
  type Outcome,
} from '../../src/policy/index.js';
import { summaryLine } from '../../src/policy/cli.js';
import { T } from './fixtures.js';
import { TempTree } from './tmp.js';

const AGENT = fileURLToPath(new URL('../../dist/policy/agent-main.js', import.meta.url));

let tree: TempTree;
let agent: RunningAgent | undefined;
let server: Server | undefined;
beforeEach(() => {
  tree = new TempTree();
});
afterEach(async () => {
  if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
    agent.child.kill('SIGKILL');
    await once(agent.child, 'exit');
  }
  agent = undefined;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  tree.remove();
});

/** The agent as a person sees it: its stdout as one growing text, its stdin to type into. */
class RunningAgent {
  output = '';
  private readonly waiters: Array<{ text: string; from: number; resolve: () => void }> = [];

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => {
      this.output += d.toString();
      for (const w of [...this.waiters]) {
        if (this.output.indexOf(w.text, w.from) >= 0) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    });
  }

  /** Resolves once `text` appears in the output after position `from`; returns the output from there. */
  async until(text: string, from = 0): Promise<string> {
    if (this.output.indexOf(text, from) < 0) {
      await new Promise<void>((resolve) => this.waiters.push({ text, from, resolve }));
    }
    return this.output.slice(from);
  }

  type(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }
}

async function startAgent(socket: string): Promise<RunningAgent> {
  const child = spawn(process.execPath, [AGENT, '--socket', socket], { stdio: ['pipe', 'pipe', 'pipe'] });
  const running = new RunningAgent(child);
  await running.until('answering on');
  return running;
}

const PROMPT = 'allow to which target?';

/** An ask from test-vm1 for test.Svc+arg, offering its tag2 peers, test-vm2 by default. */
function askOutcome(): Outcome & { decision: AskDecision } {
  const policy = parsePolicyText('test.Svc * test-vm1 @tag:tag2 ask default_target=test-vm2\n');
  const outcome = decide(policy, { source: 'test-vm1', target: 'test-vm2', call: 'test.Svc+arg' }, T);
  if (outcome.decision.result !== 'ask') throw new Error(summaryLine(outcome));
  return outcome as Outcome & { decision: AskDecision };
}

describe('odyssey-policy-agent', () => {
  it('shows source, service, argument, targets and default, and the typed choice allows that target', async () => {
    const socket = tree.path('run/policy-agent.sock');
    agent = await startAgent(socket);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const outcome = askOutcome();
    const targets = outcome.decision.targets;
    expect(targets).toEqual([
      'test-invalid-dvm',
      'test-no-dvm',
      'test-standalone',
      'test-template',
      'test-vm2',
    ]);
    const answered = settleAsk(outcome, socket);
    const shown = await agent.until(PROMPT);
    expect(shown).toContain(
      [
        'qrexec call waiting for an answer:',
        '  source:   test-vm1',
        '  service:  test.Svc',
        '  argument: +arg',
        '  targets:',
        '    1) test-invalid-dvm',
        '    2) test-no-dvm',
        '    3) test-standalone',
        '    4) test-template',
        '    5) test-vm2',
        '  default:  test-vm2',
        `${PROMPT} (number or name, Enter for the default; n to deny): `,
      ].join('\n'),
    );
    agent.type('3');
    const result = await answered;
    expect(summaryLine(result)).toBe('allow target=test-standalone');
    expect(result.response).toBe(
      'user=DEFAULT\nresult=allow\ntarget=test-standalone\ntarget_uuid=uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33\nautostart=True\nrequested_target=test-vm2',
    );
  });

  it('Enter takes the default, a name works, nonsense asks again, n denies; questions queue in order', async () => {
    const socket = tree.path('agent.sock');
    agent = await startAgent(socket);
    const first = settleAsk(askOutcome(), socket);
    let seen = (await agent.until(PROMPT)).length;
    const second = settleAsk(askOutcome(), socket);
    const third = settleAsk(askOutcome(), socket);
    agent.type('');
    expect(summaryLine(await first)).toBe('allow target=test-vm2');

    await agent.until(PROMPT, seen);
    seen = agent.output.length;
    agent.type('no-such-qube');
    await agent.until('not one of the targets', seen);
    agent.type('test-no-dvm');
    expect(summaryLine(await second)).toBe('allow target=test-no-dvm');

    agent.type('n');
    const denied = await third;
    expect(denied.decision).toMatchObject({ result: 'deny', reason: 'denied by the user __main__:1' });
    expect(denied.response).toBe('result=deny');
  });

  it('lines typed while nothing is asked are dropped, not kept to answer the next question', async () => {
    const socket = tree.path('agent.sock');
    agent = await startAgent(socket);
    agent.type('1');
    await agent.until('no question is waiting');
    const answered = settleAsk(askOutcome(), socket);
    const from = agent.output.length;
    await agent.until(PROMPT, from);
    agent.type('n');
    expect((await answered).decision.result).toBe('deny');
  });

  it('denies what is waiting when its input ends, then exits and removes its socket', async () => {
    const socket = tree.path('agent.sock');
    agent = await startAgent(socket);
    const waiting = settleAsk(askOutcome(), socket);
    await agent.until(PROMPT);
    agent.child.stdin.end();
    expect((await waiting).decision).toMatchObject({
      result: 'deny',
      reason: 'denied by the user __main__:1',
    });
    const [code] = (await once(agent.child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });

  it('with no agent running, an ask is denied (no socket, or a stale one left by a killed agent)', async () => {
    const socket = tree.path('agent.sock');
    const none = await settleAsk(askOutcome(), socket);
    expect(none.decision).toMatchObject({ result: 'deny', reason: `no policy agent is running (${socket})` });
    expect(none.response).toBe('result=deny');

    agent = await startAgent(socket);
    agent.child.kill('SIGKILL');
    await once(agent.child, 'exit');
    expect(existsSync(socket)).toBe(true);
    const stale = await settleAsk(askOutcome(), socket);
    expect(stale.decision).toMatchObject({
      result: 'deny',
      reason: `no policy agent is running (${socket})`,
    });

    expect((await settleAsk(askOutcome(), undefined)).decision).toMatchObject({
      result: 'deny',
      reason: 'no policy agent is configured',
    });
  });

  it("sends upstream's policy.Ask request and refuses a target it did not offer or a reply it cannot read", async () => {
    const socket = tree.path('fake.sock');
    const requests: string[] = [];
    let reply = 'allow:dom0';
    server = createServer((conn) => {
      let data = '';
      conn.on('data', (d: Buffer) => (data += d.toString('latin1')));
      conn.on('end', () => {
        requests.push(data);
        conn.end(reply);
      });
    });
    await new Promise<void>((resolve) => server?.listen(socket, resolve));
    const outcome = askOutcome();
    const offered = await settleAsk(outcome, socket);
    expect(offered.decision).toMatchObject({ result: 'deny', reason: 'target dom0 is not a valid choice' });
    expect(requests[0]).toBe(POLICY_ASK_HEADER + JSON.stringify(askRequestOf(outcome.decision)));
    expect(JSON.parse(requests[0]?.split('\0')[1] ?? '')).toEqual({
      source: 'test-vm1',
      service: 'test.Svc',
      argument: '+arg',
      targets: ['test-invalid-dvm', 'test-no-dvm', 'test-standalone', 'test-template', 'test-vm2'],
      default_target: 'test-vm2',
      icons: {},
    });
    reply = 'yes please';
    expect((await settleAsk(outcome, socket)).decision).toMatchObject({
      result: 'deny',
      reason: 'invalid policy agent reply: "yes please"',
    });
    reply = 'x'.repeat(4096);
    expect((await settleAsk(outcome, socket)).decision).toMatchObject({
      result: 'deny',
      reason: 'policy agent reply over 1024 bytes',
    });
  });
});
