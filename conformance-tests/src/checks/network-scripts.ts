import { PROBE_TOKEN } from '../host-servers.js';

/*
 * The bash scripts the network checks run in guests, apart from the checks so that the host's own
 * bash can run them against the suite's servers (conformance-tests/test/network-scripts.test.ts):
 * a quoting slip in one of them shows on the host, not after a 13-minute TCG run.
 */

/** Prints the probe server's greeting when `host:port` answers within a few seconds, nothing otherwise. */
export function reachScript(host: string, port: number): string {
  return `timeout 8 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -c ${PROBE_TOKEN.length} <&3' 2>/dev/null; true`;
}

/**
 * Starts, in the background and outliving the script, a server on `port` that greets every
 * connection with the probe server's greeting. The greeting goes as an argument in base64: no shell
 * or JavaScript quoting stands between the bytes and the client.
 */
export function listenerScript(port: number): string {
  const server = `require('net').createServer((s) => s.on('error', () => {}).end(Buffer.from(process.argv[1], 'base64'))).listen(Number(process.argv[2]))`;
  const token = Buffer.from(PROBE_TOKEN).toString('base64');
  return `setsid node -e "${server}" ${token} ${port} </dev/null >/dev/null 2>&1 &`;
}

/** Reads the greeting from `host:port`, then sends `bytes` zeros and closes (the greeting read first: see below). */
export function sendScript(host: string, port: number, bytes: number): string {
  // A socket closed with unread data sends RST, and bytes still in flight are lost.
  return `timeout 120 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -c ${PROBE_TOKEN.length} <&3 >/dev/null && head -c ${bytes} /dev/zero >&3'`;
}

/** Opens and closes `count` connections to `host:port`; prints the mean time of one, in µs. */
export function connectScript(host: string, port: number, count: number): string {
  return `s=$(date +%s%N); for i in $(seq ${count}); do exec 3<>/dev/tcp/${host}/${port} || exit 1; exec 3>&-; done; e=$(date +%s%N); echo $(( (e - s) / ${count} / 1000 ))`;
}

/** What a guest's networking looks like, for a failure's reason: links, addresses, routes, odyssey-network's log. */
export const DIAGNOSE_SCRIPT = [
  'ip -br link',
  'ip -br -4 address',
  'ip route',
  'sudo journalctl -b -u odyssey-network --no-pager -o cat | tail -n 20',
].join('; ');
