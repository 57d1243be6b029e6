// bench:qubesdb — dom0's QubesDB for one domain read by the domain's daemon over the socket vchan
// transport (no hypervisor: the protocol, the database and odysseyd's entry computation only):
// the time of the first full copy, and how long a feature change (service.cups) takes to fire a
// watch of a client on the domain's local socket. Prints a summary and writes bench/results/qubesdb.json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ROOT, percentile } from './lib.js';

const { App } = await import(join(ROOT, 'core/dist/model/app.js'));
const { QubesDbHost } = await import(join(ROOT, 'core/dist/daemon/qubesdb-host.js'));
const { GuestQubesDb, LocalQubesDbServer, QubesDbClient } = await import(join(ROOT, 'qubesdb/dist/index.js'));
const { SocketVchanTransport } = await import(join(ROOT, 'vchan/dist/index.js'));

const CHANGES = Number(process.env.BENCH_CHANGES ?? 1000);

const dir = await mkdtemp(join(tmpdir(), 'bench-qubesdb-'));
const noPools = { has: () => false, names: () => [], defaultPoolName: () => undefined };
const app = new App(dir, { memoryMiB: 4096, cpus: 2 }, noPools);
app.createAdminVm(app.labels.get('black'));
const work = app.addVm('StandaloneVM', { name: 'work', label: app.labels.get('red') });
const host = new QubesDbHost({
  app,
  transport: new SocketVchanTransport({ localDomain: '0', dir }),
  log: () => undefined,
});
work.xid = 3;
app.events.fire(work, 'property-reset:xid', { name: 'xid' });

const begin = performance.now();
const guest = new GuestQubesDb({ transport: new SocketVchanTransport({ localDomain: '3', dir }) });
guest.start();
await guest.ready;
const syncMs = performance.now() - begin;
const keys = guest.db.size;

const local = await LocalQubesDbServer.listen(join(dir, 'qubesdb.sock'), guest.db);
const client = await QubesDbClient.connect(local.path);
await client.watch('/qubes-service/cups');
const times = [];
for (let i = 0; i < CHANGES; i++) {
  const start = performance.now();
  work.features.set('service.cups', i % 2 ? '1' : '');
  await client.watchEvent();
  times.push(performance.now() - start);
}
times.sort((a, b) => a - b);
console.log(`first copy of the database: ${syncMs.toFixed(1)} ms (${keys} keys)`);
console.log(
  `feature set -> guest watch fired: median ${percentile(times, 50).toFixed(3)} ms, ` +
    `p99 ${percentile(times, 99).toFixed(3)} ms over ${CHANGES} changes`,
);
const results = {
  keys,
  firstCopyMs: Math.round(syncMs * 10) / 10,
  changes: CHANGES,
  watchFiredMs: { p50: percentile(times, 50), p99: percentile(times, 99) },
};
await mkdir(join(ROOT, 'bench/results'), { recursive: true });
await writeFile(join(ROOT, 'bench/results/qubesdb.json'), `${JSON.stringify(results, null, 2)}\n`);
client.close();
await local.close();
await guest.stop();
await host.close();
await rm(dir, { recursive: true, force: true });
