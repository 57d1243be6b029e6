import { existsSync } from 'node:fs';
import { spawnProcess, type ServiceStarter } from '@odyssey/qrexec';

/** Present when systemd runs the system as PID 1 (what sd_booted() checks). */
const SYSTEMD_BOOTED = '/run/systemd/system';

/**
 * upstream's semantics: wait until systemd has finished starting the system, its verdict on
 * stderr and, when it is not `running`, the failed units too, and exit with systemctl's status.
 */
const WAIT_FOR_SYSTEMD = `rc=0
systemctl --wait is-system-running >&2 || rc=$?
if [ "$rc" -ne 0 ]; then LC_ALL=C TERM=dumb systemctl --failed --legend=no >&2; fi
exit "$rc"
`;

/**
 * The services the agent answers itself when no file in its service directories provides one,
 * because every guest needs them and not every guest image ships them:
 * `qubes.WaitForRunningSystem` (qubes-core-agent-linux) returns once the system has started, as
 * dom0 waits for before it pauses a preloaded disposable. Under systemd that is systemd's own
 * verdict; a guest without it (the busybox images, the process backend) starts the agent last,
 * so the system is up once the agent runs the call.
 */
export function builtinService(
  serviceAndArg: string,
  env: NodeJS.ProcessEnv = process.env,
  systemdBooted = SYSTEMD_BOOTED,
): ServiceStarter | undefined {
  if (serviceAndArg.split('+', 1)[0] !== 'qubes.WaitForRunningSystem') return undefined;
  return async () => (existsSync(systemdBooted) ? spawnProcess('/bin/sh', ['-c', WAIT_FOR_SYSTEMD], env) : 0);
}
