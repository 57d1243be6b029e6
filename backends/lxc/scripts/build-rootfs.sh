#!/usr/bin/env bash
# Builds the root tree of lxc domains from the project's guest image (scripts/build-guest-image.sh):
# its initramfs unpacked (busybox, node, the bundled programs), without the kernel modules a
# container cannot load, plus the socket-transport qrexec agent (agent/src/agent-main.ts bundled)
# and /sbin/odyssey-lxc-init, the container's init. Every domain shares the tree read-only.
#
#   build-rootfs.sh [--cache-dir DIR]     prints rootfs=PATH last
#
# The tree is rebuilt only when the guest image or the agent bundle changes.
# Needs what build-guest-image.sh needs, and lz4 and cpio.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CACHE="${ODYSSEY_GUEST_CACHE:-/var/cache/odyssey/guest}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
die() { echo "build-rootfs: $*" >&2; exit 1; }
command -v lz4 >/dev/null || die "lz4 missing: apt-get install lz4"

mkdir -p "$CACHE"
# One build of the tree at a time: the later one's rm -rf "$OUT" would take it from under the
# containers the first one's caller started (build-guest-image.sh takes a lock of its own).
exec 9>"$CACHE/.lock-lxc"
flock 9
IMAGE="$("$ROOT/scripts/build-guest-image.sh" --cache-dir "$CACHE" | sed -n 's/^initramfs=//p')"
[ -s "$IMAGE" ] || die "build-guest-image.sh named no initramfs"
WORK="$(mktemp -d "$CACHE/.lxc-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
"$ROOT/node_modules/.bin/esbuild" "$ROOT/agent/src/agent-main.ts" --bundle --platform=node --format=esm \
  --target=node20 --log-level=warning \
  --alias:@odyssey/vchan="$ROOT/vchan/src" --alias:@odyssey/agent="$ROOT/agent/src" \
  --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
  --outfile="$WORK/agent-socket.mjs"
KEY="$( (sha256sum "$IMAGE" "$WORK/agent-socket.mjs" "$0" | cut -c1-64) | sha256sum | cut -c1-16)"
OUT="$CACHE/lxc-$KEY"
if [ ! -x "$OUT/root/sbin/odyssey-lxc-init" ]; then
  R="$WORK/root"
  mkdir -p "$R"
  (cd "$R" && lz4 -dc "$IMAGE" | cpio -idm --quiet)
  rm -rf "$R/lib/modules" "$R/init" "$R/etc/platform-init" "$R/etc/acpi"
  cp "$WORK/agent-socket.mjs" "$R/opt/odyssey/"
  # Mount points for what the domain XML binds or mounts.
  # libvirt_lxc pivots the root through .oldroot, which the container's root could not create.
  mkdir -p "$R/run" "$R/tmp" "$R/rw" "$R/home" "$R/var/run/odyssey-vchan" "$R/.oldroot"
  # The root is read-only and shared: the qrexec services live on the domain's /run, seeded from
  # the image's, so dom0 can install more (as it does in a VM's /etc/qubes-rpc).
  mv "$R/etc/qubes-rpc" "$R/opt/odyssey/qubes-rpc"
  ln -s /run/qubes-rpc "$R/etc/qubes-rpc"
  # The domain's programs reach vchans as the agent does: the socket transport in the vchan dir.
  rm -f "$R/usr/bin/qrexec-client-vm"
  printf '#!/bin/sh\n. /run/qubes/domain-env\nexec node /opt/odyssey/qrexec-client-vm.mjs "$@"\n' \
    >"$R/usr/bin/qrexec-client-vm"
  chmod 755 "$R/usr/bin/qrexec-client-vm"
  # The container's init: libvirt gives it the domain name (its vchan label) as its argument.
  # The agent is not pid 1: a shell stays pid 1, reaps what the agent's services leave, and ends
  # with the agent's status (SIGTERM from libvirt's shutdown is passed on to the agent).
  cat >"$R/sbin/odyssey-lxc-init" <<'EOS'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin HOME=/root
mkdir -p /run/qubes /tmp
cp -r /opt/odyssey/qubes-rpc /run/qubes-rpc
printf 'export VCHAN_DOMAIN=%s VCHAN_SOCKET_DIR=/var/run/odyssey-vchan QREXEC_AGENT_SOCKET=/run/qubes/qrexec-agent\n' \
  "$1" >/run/qubes/domain-env
. /run/qubes/domain-env
# Trapped before the agent starts: pid 1 of a namespace ignores a signal it has no handler for, so
# a shutdown's SIGTERM arriving between the fork and a later trap would be lost.
agent=
trap 'stopping=1; [ -z "$agent" ] || kill -TERM $agent' TERM
# The agent's output reaches the console through a pipe that cat copies there. libvirt_lxc relays
# the console only while a client reads it, so its writers wait once ~40 KB are queued: cat
# waits then, and the agent drops the lines the full pipe takes no more of (console-log.ts)
# instead of stopping. And node, at exit, resets a TTY it started on, which aborts it once
# libvirt_lxc has closed the pty (at a kill); a pipe it leaves alone.
mkfifo /run/qubes/console
cat /run/qubes/console >/dev/console &
node /opt/odyssey/agent-socket.mjs --domain-id "$1" --vchan-dir "$VCHAN_SOCKET_DIR" \
  --agent-socket "$QREXEC_AGENT_SOCKET" --service-dir /etc/qubes-rpc >/run/qubes/console 2>&1 &
agent=$!
[ -z "${stopping:-}" ] || kill -TERM $agent
status=0
while kill -0 $agent 2>/dev/null; do
  wait $agent
  status=$?
done
# libvirt reports every end of this init as a shutdown: an agent that ended on its own with a
# failure (killed, crashed) is marked for dom0 in the directory it shares (lxc-flavour.ts stopReason).
[ -n "${stopping:-}" ] || [ "$status" -eq 0 ] || : >"$VCHAN_SOCKET_DIR/odyssey-crashed"
exit $status
EOS
  chmod 755 "$R/sbin/odyssey-lxc-init"
  chmod -R a+rX "$R"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  mv "$R" "$OUT/root"
fi
ln -sfn "lxc-$KEY" "$CACHE/current-lxc"
echo "rootfs=$OUT/root"
