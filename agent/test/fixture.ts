import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { QrexecDaemon, type QrexecPolicy, type QrexecPolicyRequest } from '@odyssey/qrexec';
import { SocketVchanTransport } from '@odyssey/vchan';
import { QrexecAgent, runClientVm } from '../src/index.js';

/** A process domain: its id, agent, trigger socket and service directory, and dom0's daemon for it. */
export interface TestDomain {
  readonly name: string;
  readonly id: number;
  readonly serviceDir: string;
  readonly triggerPath: string;
  readonly agent: QrexecAgent;
  readonly daemon: QrexecDaemon;
}

export interface CallResult {
  readonly stdout: Buffer;
  readonly stderr: string;
  readonly exitCode: number;
}

/** dom0 plus process domains on one socket-vchan directory, with a policy the test can swap. */
export class QrexecWorld {
  readonly requests: QrexecPolicyRequest[] = [];
  policy: QrexecPolicy = async () => ({ result: 'deny' });
  readonly domains = new Map<string, TestDomain>();
  readonly #servers: Server[] = [];

  private constructor(
    readonly root: string,
    readonly vchanDir: string,
    readonly dom0ServiceDir: string,
  ) {}

  static async create(): Promise<QrexecWorld> {
    const root = await mkdtemp(join(tmpdir(), 'qrexec-'));
    const world = new QrexecWorld(root, join(root, 'vchan'), join(root, 'dom0-rpc'));
    await mkdir(world.dom0ServiceDir, { recursive: true });
    return world;
  }

  async addDomain(
    name: string,
    id: number,
    options: { switchUsers?: boolean; rpcConfigDirs?: readonly string[] } = {},
  ): Promise<TestDomain> {
    const serviceDir = join(this.root, `${name}-rpc`);
    await mkdir(serviceDir, { recursive: true });
    const triggerPath = join(this.root, `${name}-agent.sock`);
    const agent = new QrexecAgent({
      transport: new SocketVchanTransport({ localDomain: String(id), dir: this.vchanDir }),
      serviceDirs: [serviceDir],
      triggerPath,
      ...options,
    });
    await agent.start();
    const daemon = new QrexecDaemon({
      domain: { name, id },
      transport: new SocketVchanTransport({ localDomain: '0', dir: this.vchanDir }),
      policy: (request) => {
        this.requests.push(request);
        return this.policy(request);
      },
      serviceDirs: [this.dom0ServiceDir],
      peers: (peer) => this.domains.get(peer)?.daemon,
      defaultUser: 'user',
    });
    await daemon.start();
    const domain = { name, id, serviceDir, triggerPath, agent, daemon };
    this.domains.set(name, domain);
    return domain;
  }

  domain(name: string): TestDomain {
    const domain = this.domains.get(name);
    if (!domain) throw new Error(`no domain ${name}`);
    return domain;
  }

  /** An executable service in `dir` (a domain's or dom0's service directory). */
  async addScript(dir: string, name: string, script: string): Promise<void> {
    const path = join(dir, name);
    await writeFile(path, script);
    await chmod(path, 0o755);
  }

  /**
   * A dom0 socket service, linked into dom0's service directory as upstream
   * links qubesd.sock: it records what it received and answers `reply(received)`.
   */
  async addSocketService(
    name: string,
    reply: (received: Buffer) => Buffer,
  ): Promise<{ received: Promise<Buffer> }> {
    const socketPath = join(this.root, `${name}.sock`);
    let resolveReceived: (data: Buffer) => void = () => undefined;
    const received = new Promise<Buffer>((resolve) => (resolveReceived = resolve));
    const server = createServer((connection) => {
      const chunks: Buffer[] = [];
      connection.on('data', (chunk: Buffer) => chunks.push(chunk));
      connection.on('end', () => {
        const data = Buffer.concat(chunks);
        resolveReceived(data);
        connection.end(reply(data));
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    this.#servers.push(server);
    await symlink(socketPath, join(this.dom0ServiceDir, name));
    return { received };
  }

  /** qrexec-client-vm in `source`, run in-process with the given stdin. */
  async clientVm(
    source: string,
    target: string,
    service: string,
    stdin: Buffer | Readable,
  ): Promise<CallResult> {
    const domain = this.domain(source);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out = collect(stdout);
    const err = collect(stderr);
    const exitCode = await runClientVm({
      transport: new SocketVchanTransport({ localDomain: String(domain.id), dir: this.vchanDir }),
      triggerPath: domain.triggerPath,
      target,
      serviceAndArg: service,
      stdin: stdin instanceof Readable ? stdin : Readable.from([stdin]),
      stdout,
      stderr,
    });
    stdout.end();
    stderr.end();
    return { stdout: await out, stderr: (await err).toString(), exitCode };
  }

  async close(): Promise<void> {
    for (const domain of this.domains.values()) {
      await domain.daemon.close();
      await domain.agent.stop();
    }
    for (const server of this.#servers) server.close();
    await rm(this.root, { recursive: true, force: true });
  }
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export const allowTo =
  (target: string): QrexecPolicy =>
  async (request) => ({
    result: 'allow',
    user: 'DEFAULT',
    target,
    requestedTarget: request.target,
    autostart: true,
  });
