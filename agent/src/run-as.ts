/**
 * The command that runs a call as the user dom0 named in it (`user:QUBESRPC ...`, the qube's
 * default_user unless the caller chose one), as upstream's agent runs every call as its user:
 * runuser (util-linux) sets the user's uid, groups, HOME and SHELL. An agent that does not switch
 * users (the busybox image has root only; the process backend runs as its host user) runs every
 * call as itself, and so does a root agent asked for root.
 */
export function runAsCommand(user: string, switchUsers: boolean, agentUid: number): readonly string[] {
  if (!switchUsers || (user === 'root' && agentUid === 0)) return [];
  return ['runuser', '-u', user, '--'];
}
