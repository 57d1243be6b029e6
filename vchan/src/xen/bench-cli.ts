#!/usr/bin/env node
// Throughput and round trip of Xen vchans, run inside Xen domains (a nested dom0 and its guests):
//
//   node vchan/dist/xen/bench-cli.js echo --peer DOMID --port PORT [--once]
//       serves an echo on PORT for DOMID (as the guest agent does with odyssey.vchan_echo=PORT)
//   node vchan/dist/xen/bench-cli.js measure --peer DOMID --port PORT [--bytes N] [--rounds N]
//       connects to an echo server and prints one JSON line:
//       {"peer","port","bytes","seconds","mbPerSecond","roundTripUs"}
import { parseArgs } from 'node:util';
import { measureRoundTrip, measureThroughput } from './throughput.js';
import { XenVchanTransport } from './transport.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    peer: { type: 'string' },
    port: { type: 'string' },
    bytes: { type: 'string', default: String(64 << 20) },
    rounds: { type: 'string', default: '1000' },
    'timeout-ms': { type: 'string', default: '10000' },
    once: { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  process.stderr.write(`bench-cli: ${message}\n`);
  process.exit(2);
}

const mode = positionals[0];
const peer = values.peer ?? fail('--peer DOMID is required');
const port = Number(values.port ?? fail('--port PORT is required'));
const transport = new XenVchanTransport();

try {
  await run();
} catch (error) {
  fail((error as Error).message);
}

async function run(): Promise<void> {
  if (mode === 'echo') {
    do {
      const vchan = await transport.listen(peer, port);
      vchan.on('error', (error: Error) => process.stderr.write(`bench-cli: ${error.message}\n`));
      vchan.pipe(vchan);
      await new Promise((resolve) => vchan.once('close', resolve));
    } while (!values.once);
  } else if (mode === 'measure') {
    const vchan = await transport.connect(peer, port, { timeoutMs: Number(values['timeout-ms']) });
    const roundTripUs = await measureRoundTrip(vchan, Number(values.rounds));
    const result = await measureThroughput(vchan, vchan, Number(values.bytes));
    process.stdout.write(`${JSON.stringify({ peer, port, ...result, roundTripUs })}\n`);
    vchan.destroy();
  } else {
    fail('usage: bench-cli.js echo|measure --peer DOMID --port PORT');
  }
}
