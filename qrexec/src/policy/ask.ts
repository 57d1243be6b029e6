import { createConnection } from 'node:net';
import { AccessDenied } from './errors.js';
import { outcomeOf, type Outcome } from './evaluate.js';
import { answerAsk, denyDecision, type AskDecision } from './resolution.js';

/*
 * `ask` decisions, answered by a policy agent (upstream: qrexec-policy-agent
 * in the source's GUI qube, reached as the `policy.Ask` socket service; here
 * `odyssey-policy-agent` in dom0, reached on a local socket). The request is
 * upstream's: a socket-service header, then JSON; the reply is ASCII,
 * `allow:TARGET` or `deny`.
 */

export const POLICY_ASK_SERVICE = 'policy.Ask';

/** Where the agent listens by default: odysseyd's run directory under the default state dir. */
export const DEFAULT_POLICY_AGENT_SOCKET = '/var/lib/qubes/run/policy-agent.sock';

/** The agent's socket for a daemon on `stateDir`, next to its `qrexec.<name>` sockets. */
export function policyAgentSocket(stateDir: string): string {
  return `${stateDir}/run/policy-agent.sock`;
}

/** upstream's header for a socket service called locally by dom0. */
export const POLICY_ASK_HEADER = `${POLICY_ASK_SERVICE} dom0 name dom0\0`;

/** The fields upstream's policy.Ask carries. */
export interface AskRequest {
  readonly source: string;
  /** Without the argument. */
  readonly service: string;
  /** Starts with `+`; `+` alone when there is none. */
  readonly argument: string;
  readonly targets: readonly string[];
  /** `''` when there is none. */
  readonly default_target: string;
  /** Icon names of the qubes named above, where the system info has them. */
  readonly icons: Readonly<Record<string, string>>;
}

/** Longest reply taken from an agent: `allow:` and a qube name, with room to spare. */
const MAX_REPLY_BYTES = 1024;

export function askRequestOf(ask: AskDecision): AskRequest {
  const { request } = ask;
  const icons: Record<string, string> = {};
  for (const name of [request.source, ...ask.targets]) {
    const qube = name.startsWith('@dispvm:') ? name.slice('@dispvm:'.length) : name;
    const icon = request.domains.get(qube)?.icon;
    if (icon) icons[name] = name.startsWith('@dispvm:') ? icon.replace('app', 'disp') : icon;
  }
  return {
    source: request.source,
    service: request.service,
    argument: request.argument,
    targets: [...ask.targets],
    default_target: ask.defaultTarget ?? '',
    icons,
  };
}

/** Why an agent could not be asked; a refusal carrying this message is what the call gets. */
export class AgentUnavailable extends AccessDenied {}

/** Sends one policy.Ask to the agent on `socketPath`; resolves with its reply text. */
export function callPolicyAgent(socketPath: string, request: AskRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const chunks: Buffer[] = [];
    let length = 0;
    socket.on('connect', () => socket.end(POLICY_ASK_HEADER + JSON.stringify(request)));
    socket.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > MAX_REPLY_BYTES) {
        socket.destroy();
        reject(new AccessDenied(`policy agent reply over ${MAX_REPLY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const missing = error.code === 'ENOENT' || error.code === 'ECONNREFUSED';
      reject(
        missing
          ? new AgentUnavailable(`no policy agent is running (${socketPath})`)
          : new AccessDenied(`policy agent: ${error.message}`),
      );
    });
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

/**
 * Turns an `ask` outcome into the user's answer: allow with the chosen
 * target, or deny (the user refused, chose something not offered, answered
 * nonsense, or no agent runs: upstream denies without a GUI). Other
 * outcomes pass through. Without `socketPath` nobody can be asked.
 */
export async function settleAsk(outcome: Outcome, socketPath: string | undefined): Promise<Outcome> {
  const ask = outcome.decision;
  if (ask.result !== 'ask') return outcome;
  try {
    if (socketPath === undefined) throw new AgentUnavailable('no policy agent is configured');
    const reply = await callPolicyAgent(socketPath, askRequestOf(ask));
    if (reply === 'deny') return outcomeOf(answerAsk(ask, false, ''));
    if (reply.startsWith('allow:')) return outcomeOf(answerAsk(ask, true, reply.slice('allow:'.length)));
    throw new AccessDenied(`invalid policy agent reply: ${JSON.stringify(reply.slice(0, 64))}`);
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    return outcomeOf(denyDecision(err, ask.origin));
  }
}
