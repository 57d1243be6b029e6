import { QubesDbClient } from '@odyssey/qubesdb';

/** Where dom0's qubes.FeaturesRequest reads the requests (upstream's prefix). */
const PREFIX = '/features-request/';

export interface FeaturesRequestIo {
  readonly stderr: (text: string) => void;
  /** The domain's QubesDB socket; default $QUBESDB_SOCKET or the daemon's own. */
  readonly socketPath?: string;
  /** Calls dom0's qubes.FeaturesRequest (upstream: `qrexec-client-vm dom0 qubes.FeaturesRequest`); its exit code. */
  readonly commit: () => Promise<number>;
}

const USAGE =
  'usage: qvm-features-request [-h] [--commit] [KEY=VALUE ...]\n\n' +
  'Request a feature from dom0: each KEY=VALUE is written to QubesDB under /features-request/;\n' +
  '--commit then sends all requests written so far to dom0 (qubes.FeaturesRequest).\n';

/**
 * qvm-features-request as upstream's agent has it: requests accumulate in
 * the domain's QubesDB (several packages' post-install scripts each add
 * theirs), and one --commit sends them. Resolves with the exit code: 2 for a
 * usage error, as argparse; the call's own code when the commit fails.
 */
export async function runFeaturesRequest(argv: readonly string[], io: FeaturesRequestIo): Promise<number> {
  let commit = false;
  const requests: [string, string][] = [];
  for (const arg of argv) {
    if (arg === '-h' || arg === '--help') {
      io.stderr(USAGE);
      return 0;
    }
    if (arg === '--commit') {
      commit = true;
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('-') || eq <= 0) {
      io.stderr(`${USAGE}qvm-features-request: error: expected KEY=VALUE, got ${JSON.stringify(arg)}\n`);
      return 2;
    }
    requests.push([arg.slice(0, eq), arg.slice(eq + 1)]);
  }
  if (requests.length > 0) {
    const client = await (io.socketPath === undefined
      ? QubesDbClient.connect()
      : QubesDbClient.connect(io.socketPath));
    try {
      for (const [key, value] of requests) await client.write(PREFIX + key, value);
    } finally {
      client.close();
    }
  }
  return commit ? io.commit() : 0;
}
