// bench:policy — qrexec policy decisions per second with 10,000 rules (worst
// case: the matching rule is the last one; typical: the generated admin policy
// with grants for many management qubes in its includes), and one Admin API
// call (admin.vm.property.Get) from a process domain through qrexec against
// the same call straight on the admin socket, measured interleaved in one run.
// Prints a summary and writes bench/results/policy.json.
import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

import { ROOT, call, percentile, progress } from './lib.js';

const { METHODS } = await import(join(ROOT, 'core/dist/api/method-table.js'));
const { generateAdminPolicy } = await import(join(ROOT, 'core/dist/api/admin-policy.js'));
const { decide, parsePolicyText } = await import(join(ROOT, 'qrexec/dist/index.js'));
const { createAgentTransport, runClientVm } = await import(join(ROOT, 'agent/dist/index.js'));

const RULES = 10_000;
const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 200);
const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 20_000);
const CALLS = Number(process.env.BENCH_CALLS ?? 200);

/** System info of dom0 plus DOMAINS qubes, each created by one of `managers` management qubes. */
function systemInfo(managers) {
  const domains = {
    dom0: { type: 'AdminVM', tags: [], power_state: 'Running', uuid: '00000000-0000-0000-0000-000000000000' },
  };
  const qube = (tags, state) => ({
    type: 'AppVM',
    tags,
    power_state: state,
    template_for_dispvms: false,
    default_dispvm: null,
    icon: 'appvm-red',
    label: 'red',
    guivm: null,
    relayvm: null,
    transport_rpc: null,
    internal: null,
  });
  for (let m = 0; m < managers; m++) domains[`mgmt${m}`] = qube([], 'Running');
  for (let i = 0; i < DOMAINS; i++) domains[`vm${i}`] = qube([`created-by-mgmt${i % managers}`], 'Halted');
  return { domains };
}

function timeDecisions(label, policy, info, nextCall) {
  const p = progress(label);
  const latencies = [];
  const counts = { allow: 0, deny: 0 };
  const start = process.hrtime.bigint();
  for (let i = 0; i < DECISIONS; i++) {
    const t0 = process.hrtime.bigint();
    const outcome = decide(policy, nextCall(i), info);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e3);
    counts[outcome.decision.result === 'allow' ? 'allow' : 'deny']++;
    if (i % 1000 === 0) p.update(i, DECISIONS);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  p.end();
  latencies.sort((a, b) => a - b);
  return {
    rules: policy.rules.length,
    decisions: DECISIONS,
    ...counts,
    decisionsPerSecond: Math.round(DECISIONS / seconds),
    p50us: percentile(latencies, 50),
    p99us: percentile(latencies, 99),
  };
}

/** 9,999 rules for the same service that do not match, then the one that does. */
function worstCase() {
  const lines = [];
  for (let i = 0; i < RULES - 1; i++)
    lines.push(`admin.vm.property.Get * other${i} @anyvm allow target=dom0`);
  lines.push('admin.vm.property.Get * mgmt0 @tag:created-by-mgmt0 allow target=dom0');
  const policy = parsePolicyText(lines.join('\n'));
  return timeDecisions('worst case', policy, systemInfo(1), () => ({
    source: 'mgmt0',
    target: 'vm0',
    call: 'admin.vm.property.Get+netvm',
  }));
}

/**
 * The generated default admin policy, with each management qube granted its
 * own qubes (local-rwx) and dom0 (global-ro): every grant is expanded once per
 * admin service that includes it, so enough managers for RULES rules in all.
 */
function typical() {
  const files = Object.fromEntries(generateAdminPolicy(METHODS).map((f) => [f.path, f.content]));
  const perManager = parsePolicyText({
    __main__: files['90-admin-default.policy'],
    ...files,
    'include/admin-local-rwx': 'm @tag:created-by-m allow target=dom0\n',
    'include/admin-global-ro': 'm @adminvm allow target=dom0\n',
  }).rules.length;
  const managers = Math.max(1, Math.round(RULES / perManager));
  const grants = (line) => Array.from({ length: managers }, (_, m) => line(`mgmt${m}`)).join('\n');
  files['include/admin-local-rwx'] += grants((m) => `${m} @tag:created-by-${m} allow target=dom0`);
  files['include/admin-global-ro'] += grants((m) => `${m} @adminvm allow target=dom0`);
  const policy = parsePolicyText({ __main__: files['90-admin-default.policy'], ...files });
  const services = [
    ['admin.vm.property.Get+netvm', 'own'],
    ['admin.vm.property.Set+memory', 'own'],
    ['admin.vm.Start', 'own'],
    ['admin.vm.List', 'dom0'],
    ['admin.vm.property.Get+label', 'foreign'],
  ];
  return {
    managers,
    ...timeDecisions('typical', policy, systemInfo(managers), (i) => {
      const m = i % managers;
      const [service, whose] = services[i % services.length];
      const own = m + managers * (Math.floor(i / managers) % Math.floor(DOMAINS / managers));
      const target = whose === 'dom0' ? 'dom0' : whose === 'own' ? `vm${own}` : `vm${(own + 1) % DOMAINS}`;
      return { source: `mgmt${m}`, target, call: service };
    }),
  };
}

function run(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
    const out = [];
    child.stdout.on('data', (c) => out.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out) }));
    child.stdin.end();
  });
}

async function startDomainWorld() {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-bench-policy-'));
  const socket = join(dir, 'qubesd.sock');
  const policyDir = join(dir, 'policy.d');
  await run([join(ROOT, 'core/dist/daemon/policy-cli-main.js'), 'generate-admin', policyDir], process.env);
  await appendFile(join(policyDir, 'include/admin-local-ro'), 'bench-vm @anyvm allow target=dom0\n');
  const args = ['--backend', 'process', '--state-dir', join(dir, 'state'), '--socket', socket];
  const proc = spawn(
    process.execPath,
    [join(ROOT, 'core/dist/daemon/main.js'), ...args, '--policy-dir', policyDir, '--log-level', 'error'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  for (let i = 0; ; i++) {
    try {
      await call(socket, 'admin.vm.List', 'dom0');
      break;
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  await call(socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  for (const name of ['bench-vm', 'bench-target'])
    await call(socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=red`);
  // The daemon answers Start before the backend may be connected; retry until it is.
  for (let i = 0; ; i++) {
    try {
      await call(socket, 'admin.vm.Start', 'bench-vm');
      break;
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const xid = (await call(socket, 'admin.vm.property.Get', 'bench-vm', 'xid')).toString().split(' ').pop();
  const runtime = join(dir, 'state', 'run');
  const domain = {
    domainId: xid,
    vchanDir: join(runtime, 'vchan'),
    triggerPath: join(runtime, 'process', 'bench-vm', 'qrexec-agent.sock'),
  };
  return { dir, socket, proc, domain };
}

/** qrexec-client-vm's work, in this process: trigger, policy, data vchan, the admin socket behind it. */
async function qrexecCall(domain, service) {
  const stdout = new PassThrough();
  const chunks = [];
  stdout.on('data', (c) => chunks.push(c));
  const code = await runClientVm({
    transport: createAgentTransport({ domainId: domain.domainId, vchanDir: domain.vchanDir }),
    triggerPath: domain.triggerPath,
    target: 'bench-target',
    serviceAndArg: service,
    stdin: Readable.from([Buffer.alloc(0)]),
    stdout,
    stderr: new PassThrough(),
  });
  const reply = Buffer.concat(chunks);
  if (code !== 0 || reply[0] !== 0x30) throw new Error(`${service} through qrexec: exit ${code}, ${reply}`);
  return reply;
}

async function adminCall() {
  const world = await startDomainWorld();
  try {
    const clientEnv = {
      ...process.env,
      VCHAN_DOMAIN: world.domain.domainId,
      VCHAN_SOCKET_DIR: world.domain.vchanDir,
      QREXEC_AGENT_SOCKET: world.domain.triggerPath,
    };
    const measured = { socket: [], qrexec: [], qrexecClientVm: [] };
    const timed = async (list, fn) => {
      const t0 = process.hrtime.bigint();
      await fn();
      list.push(Number(process.hrtime.bigint() - t0) / 1e6);
    };
    const p = progress('admin.vm.property.Get');
    // Interleaved, so that both paths see the same machine load.
    for (let i = 0; i < CALLS; i++) {
      await timed(measured.socket, () =>
        call(world.socket, 'admin.vm.property.Get', 'bench-target', 'label'),
      );
      await timed(measured.qrexec, () => qrexecCall(world.domain, 'admin.vm.property.Get+label'));
      await timed(measured.qrexecClientVm, async () => {
        const { code } = await run(
          [join(ROOT, 'agent/dist/client-vm-main.js'), 'bench-target', 'admin.vm.property.Get+label'],
          clientEnv,
        );
        if (code !== 0) throw new Error(`qrexec-client-vm exited ${code}`);
      });
      p.update(i + 1, CALLS);
    }
    p.end();
    const stats = (list) => {
      list.sort((a, b) => a - b);
      return { p50ms: percentile(list, 50), p99ms: percentile(list, 99) };
    };
    const socket = stats(measured.socket);
    const qrexec = stats(measured.qrexec);
    const qrexecClientVm = stats(measured.qrexecClientVm);
    return {
      calls: CALLS,
      socket,
      qrexec,
      qrexecClientVm,
      qrexecOverSocketP50: qrexec.p50ms / socket.p50ms,
      qrexecClientVmOverSocketP50: qrexecClientVm.p50ms / socket.p50ms,
    };
  } finally {
    await call(world.socket, 'admin.vm.Kill', 'bench-vm').catch(() => undefined);
    const exited = new Promise((r) => world.proc.once('exit', r));
    world.proc.kill('SIGTERM');
    await exited;
    await killLeftovers(join(world.dir, 'state', 'run', 'process'));
    await rm(world.dir, { recursive: true, force: true });
  }
}

/** Process domains outlive the daemon by design; a benchmark leaves none behind. */
async function killLeftovers(domainsDir) {
  for (const name of await readdir(domainsDir).catch(() => [])) {
    const record = await readFile(join(domainsDir, name, 'domain.json'), 'utf8').catch(() => null);
    if (!record) continue;
    try {
      process.kill(-JSON.parse(record).pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

const results = {
  domains: DOMAINS,
  worstCase: worstCase(),
  typical: typical(),
  adminCall: await adminCall(),
};

const w = results.worstCase;
const t = results.typical;
const a = results.adminCall;
console.log(`policy, ${DOMAINS} qubes in system info, ${DECISIONS} decisions each:`);
console.log(
  `  worst case (${w.rules} rules, match last): ${w.decisionsPerSecond} decisions/s, p50 ${w.p50us.toFixed(1)} µs, p99 ${w.p99us.toFixed(1)} µs`,
);
console.log(
  `  typical admin (${t.rules} rules, ${t.managers} management qubes): ${t.decisionsPerSecond} decisions/s, p50 ${t.p50us.toFixed(1)} µs, p99 ${t.p99us.toFixed(1)} µs`,
);
console.log(`admin.vm.property.Get, ${a.calls} calls each, interleaved:`);
console.log(
  `  admin socket:                 p50 ${a.socket.p50ms.toFixed(2)} ms, p99 ${a.socket.p99ms.toFixed(2)} ms`,
);
console.log(
  `  qrexec (client in-process):   p50 ${a.qrexec.p50ms.toFixed(2)} ms, p99 ${a.qrexec.p99ms.toFixed(2)} ms — ${a.qrexecOverSocketP50.toFixed(1)}× the socket`,
);
console.log(
  `  qrexec (qrexec-client-vm):    p50 ${a.qrexecClientVm.p50ms.toFixed(2)} ms, p99 ${a.qrexecClientVm.p99ms.toFixed(2)} ms — ${a.qrexecClientVmOverSocketP50.toFixed(1)}× the socket`,
);

await mkdir(join(ROOT, 'bench/results'), { recursive: true });
await writeFile(join(ROOT, 'bench/results/policy.json'), `${JSON.stringify(results, null, 2)}\n`);
