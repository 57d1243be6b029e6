import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { POLICY_ASK_SERVICE, type AskRequest } from './ask.js';

/*
 * odyssey-policy-agent: answers policy.Ask on a terminal, one question at a
 * time, in the order they came. What it prints and accepts is for a person;
 * what it returns on the socket is upstream's `allow:TARGET` or `deny`.
 */

export interface PolicyAgentLimits {
  /** Bytes of one request (header and JSON). */
  readonly maxRequestBytes: number;
  /** Questions waiting for the terminal, the one shown included; more are denied at once. */
  readonly maxQueued: number;
}

export const POLICY_AGENT_LIMITS: PolicyAgentLimits = { maxRequestBytes: 64 * 1024, maxQueued: 32 };

interface Question {
  readonly request: AskRequest;
  readonly answer: (reply: string) => void;
  /** True once the caller went away; the question is skipped. */
  gone: boolean;
}

/** Reads a request as upstream's socket services do: to EOF, header up to the first NUL, JSON after it. */
export function parseAskRequest(data: Buffer): AskRequest {
  const nul = data.indexOf(0);
  if (nul < 0) throw new Error('no header');
  const [service] = data.subarray(0, nul).toString('latin1').split(' ');
  if (service !== POLICY_ASK_SERVICE && !service?.startsWith(`${POLICY_ASK_SERVICE}+`))
    throw new Error(`not ${POLICY_ASK_SERVICE}: ${service ?? ''}`);
  const body: unknown = JSON.parse(data.subarray(nul + 1).toString('utf8'));
  if (typeof body !== 'object' || body === null) throw new Error('request is not an object');
  const r = body as Record<string, unknown>;
  const text = (key: string): string => {
    const value = r[key];
    if (typeof value !== 'string') throw new Error(`${key} is not a string`);
    return value;
  };
  const targets = r['targets'];
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every((t) => typeof t === 'string'))
    throw new Error('targets is not a list of names');
  const icons = r['icons'];
  return {
    source: text('source'),
    service: text('service'),
    argument: text('argument'),
    targets: targets as string[],
    default_target: text('default_target'),
    icons:
      typeof icons === 'object' && icons !== null && !Array.isArray(icons)
        ? (icons as Record<string, string>)
        : {},
  };
}

/** Control characters of a caller-chosen name shown as `\xNN`, so a question cannot redraw the terminal. */
function shown(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function describeQuestion(request: AskRequest, waiting: number): string {
  const lines = [
    '',
    `qrexec call waiting for an answer${waiting > 0 ? ` (${waiting} more waiting)` : ''}:`,
    `  source:   ${shown(request.source)}`,
    `  service:  ${shown(request.service)}`,
    `  argument: ${shown(request.argument)}`,
    '  targets:',
    ...request.targets.map((t, i) => `    ${i + 1}) ${shown(t)}`),
    `  default:  ${request.default_target === '' ? '(none)' : shown(request.default_target)}`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * What a typed line means: `allow:TARGET`, `deny`, or null for a line to ask
 * again about. A target is chosen by number or name; an empty line takes the
 * default; n/no/deny refuse.
 */
export function interpretAnswer(line: string, request: AskRequest): string | null {
  const input = line.trim();
  if (['n', 'no', 'deny'].includes(input.toLowerCase())) return 'deny';
  if (input === '') return request.default_target === '' ? null : `allow:${request.default_target}`;
  const index = /^[0-9]+$/.test(input) ? Number(input) - 1 : request.targets.indexOf(input);
  const target = request.targets[index];
  return target === undefined ? null : `allow:${target}`;
}

export interface PolicyAgentOptions {
  readonly socketPath: string;
  /** The person's side: lines typed, and where questions go. */
  readonly input: Readable;
  readonly output: Writable;
  readonly limits?: Partial<PolicyAgentLimits>;
}

export class PolicyAgent {
  private readonly queue: Question[] = [];
  private readonly limits: PolicyAgentLimits;
  private server: Server | undefined;
  private closed = false;
  private inputEnded = false;
  /** Set while a question waits for its line; lines typed at other times are dropped, never kept for the next question. */
  private waiting: ((line: string | null) => void) | undefined;
  private asking = false;
  /** Resolves when the input has ended and every question has been answered. */
  readonly done: Promise<void>;
  private finish: () => void = () => undefined;

  constructor(private readonly options: PolicyAgentOptions) {
    this.limits = { ...POLICY_AGENT_LIMITS, ...options.limits };
    this.done = new Promise((resolve) => (this.finish = resolve));
    const lines = createInterface({ input: options.input, terminal: false });
    lines.on('line', (line) => {
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting) waiting(line);
      else options.output.write('no question is waiting\n');
    });
    lines.on('close', () => {
      this.inputEnded = true;
      const waiting = this.waiting;
      this.waiting = undefined;
      if (waiting) waiting(null);
      else this.close();
    });
  }

  /** Listens on the socket (mode 0600), replacing a stale one. */
  async listen(): Promise<void> {
    const path = this.options.socketPath;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await rm(path, { force: true });
    // Half-open: the caller ends its side after the request and waits for the answer on ours.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, 0o600);
    this.server = server;
  }

  /** Stops listening (the socket file goes at once) and denies whatever still waits. */
  close(): void {
    this.closed = true;
    this.server?.close();
    for (const q of this.queue.splice(0)) q.answer('deny');
    this.finish();
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const chunks: Buffer[] = [];
    let length = 0;
    socket.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > this.limits.maxRequestBytes) socket.destroy();
      else chunks.push(chunk);
    });
    socket.on('end', () => {
      let request: AskRequest;
      try {
        request = parseAskRequest(Buffer.concat(chunks));
      } catch (err) {
        this.options.output.write(
          `odyssey-policy-agent: ignoring a malformed request: ${(err as Error).message}\n`,
        );
        socket.destroy();
        return;
      }
      const question: Question = { request, answer: (reply) => socket.end(reply), gone: false };
      socket.on('close', () => (question.gone = true));
      if (this.closed || this.queue.length >= this.limits.maxQueued) {
        question.answer('deny');
        return;
      }
      this.queue.push(question);
      void this.next();
    });
  }

  /** Asks the oldest question still wanted, until none is left. */
  private async next(): Promise<void> {
    if (this.asking) return;
    this.asking = true;
    try {
      for (;;) {
        const question = this.queue[0];
        if (!question) return;
        if (!question.gone) {
          const reply = await this.ask(question);
          if (reply === null) return this.close();
          question.answer(reply);
        }
        this.queue.shift();
      }
    } finally {
      this.asking = false;
    }
  }

  private readLine(): Promise<string | null> {
    if (this.inputEnded) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  /** One question on the terminal; null when the input ended. */
  private async ask(question: Question): Promise<string | null> {
    const { output } = this.options;
    output.write(describeQuestion(question.request, this.queue.length - 1));
    for (;;) {
      const hint = question.request.default_target === '' ? '' : ', Enter for the default';
      output.write(`allow to which target? (number or name${hint}; n to deny): `);
      const line = await this.readLine();
      if (line === null) return null;
      if (question.gone) {
        output.write('the caller went away\n');
        return 'deny';
      }
      const reply = interpretAnswer(line, question.request);
      if (reply !== null) {
        output.write(`${reply}\n`);
        return reply;
      }
      output.write('not one of the targets\n');
    }
  }
}
