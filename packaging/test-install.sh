#!/usr/bin/env bash
# Installs the built package into a clean Debian 12 chroot and runs it there, as an administrator
# would: apt resolves its Depends from Debian's archive (nothing else is a source), the installed
# odysseyd serves on the process backend, and `qvm ls` and `qvm-ls` must list dom0. Then the daemon
# is stopped (SIGTERM, exit 0), the installed conformance suite runs on the process backend (on
# Debian's nodejs 18), and the package is purged (commands gone, the state dir kept).
#
#   packaging/test-install.sh [DEB]     (default dist/odyssey_<version>_amd64.deb; run as root)
#
# The base system (mmdebstrap, minbase) is cached as a tarball named for its inputs in
# $ODYSSEY_CHROOT_CACHE (default /var/cache/odyssey/chroot), downloaded .debs and apt's lists beside
# it. The chroot runs in its own mount and PID namespaces: its mounts and processes end with it.
# Debian's archive is probed first: when it cannot be reached the test runs from the cached lists
# and .debs, or is skipped with the reason when there are none. No step can hang: apt gives up on
# a silent server, and the whole chroot run is bounded by $ODYSSEY_INSTALL_TIMEOUT (default 600 s).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "test-install: skipped: making and entering a chroot needs root"
  exit 0
fi
for tool in mmdebstrap unshare chroot; do
  command -v "$tool" >/dev/null || { echo "test-install: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

version=$(node -p "require('$root/package.json').version")
deb=$(realpath "${1:-$root/dist/odyssey_${version}_amd64.deb}")
[ -f "$deb" ] || { echo "test-install: $deb not found: run npm run package:deb" >&2; exit 1; }

t0=$(date +%s.%N)
step_start=$t0
step() { # prints how long the previous step took
  local now
  now=$(date +%s.%N)
  awk -v a="$step_start" -v b="$now" -v what="$1" 'BEGIN { printf "test-install: %-50s %6.1f s\n", what, b - a }'
  step_start=$now
}

# 1. The base system, built once per set of inputs.
cache=${ODYSSEY_CHROOT_CACHE:-/var/cache/odyssey/chroot}
limit=${ODYSSEY_INSTALL_TIMEOUT:-600}
suite=bookworm
mirrors=(
  "deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main"
)
key=$(printf '%s\n' minbase "$suite" "${mirrors[@]}" "$(mmdebstrap --version)" | sha256sum | cut -c1-16)
tarball=$cache/$suite-minbase-$key.tar
mkdir -p "$cache/archives/partial" "$cache/lists/partial"
# A TCP connect to the archive says whether apt can fetch at all; apt itself can wait minutes.
if timeout 15 bash -c 'exec 3<>/dev/tcp/deb.debian.org/80' 2>/dev/null; then
  online=yes
else
  online=no
  if [ ! -f "$tarball" ] || ! ls "$cache"/lists/*_Packages >/dev/null 2>&1; then
    echo "test-install: skipped: deb.debian.org:80 cannot be reached and $cache holds no base system and apt lists from an earlier run"
    exit 0
  fi
  echo "test-install: deb.debian.org:80 cannot be reached: installing from the apt lists and .debs cached in $cache"
fi
if [ ! -f "$tarball" ]; then
  # mmdebstrap picks the output format from the name: the partial file must end in .tar too.
  timeout "$limit" mmdebstrap --quiet --variant=minbase "$suite" "$cache/.partial-$key.tar" "${mirrors[@]}"
  mv "$cache/.partial-$key.tar" "$tarball"
  step "base system built ($(basename "$tarball"))"
else
  step "base system cached ($(basename "$tarball"))"
fi

work=$(mktemp -d /tmp/odyssey-install.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
chroot_dir=$work/root
mkdir "$chroot_dir"
tar -C "$chroot_dir" -xf "$tarball"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
cp "$deb" "$chroot_dir/tmp/odyssey.deb"
step "chroot unpacked"

# 2. Inside: the steps run by /bin/sh in the chroot; each prints a line the outer script times.
cat >"$chroot_dir/tmp/inside.sh" <<'INSIDE'
set -eu
say() { echo "@@ $*"; }
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# apt waits at most 20 s for a silent server and tries twice.
apt_net="-o Acquire::http::Timeout=20 -o Acquire::Retries=1"
if [ "$ONLINE" = yes ]; then
  apt-get update -qq $apt_net
  say "apt lists fetched"
else
  say "apt lists taken from the cache (offline)"
fi
# Recommends (libvirt, QEMU) are for the kvm backend; this test runs the process backend.
# A throwaway chroot needs no fsync after each unpacked file.
apt-get install -y -qq $apt_net --no-install-recommends -o Dpkg::Options::=--force-unsafe-io /tmp/odyssey.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get install"; }
say "package installed with apt ($(dpkg-query -W -f '${Version}' nodejs) nodejs)"

for cmd in odysseyd qvm odyssey-policy odyssey-qrexec-client odyssey-conformance qvm-ls qubes-prefs qvm-prefs; do
  command -v "$cmd" >/dev/null || fail "$cmd is not on PATH"
  [ -f "/usr/share/man/man1/$cmd.1.gz" ] || [ -f "/usr/share/man/man8/$cmd.8.gz" ] || fail "no man page for $cmd"
done
getent group qubes >/dev/null || fail "postinst made no qubes group"
[ -d /var/lib/qubes ] || fail "postinst made no /var/lib/qubes"
for policy in 90-admin-default.policy 90-default.policy; do
  dpkg-query -W -f '${Conffiles}\n' odyssey | grep -q " /etc/qubes/policy.d/$policy " ||
    fail "/etc/qubes/policy.d/$policy is not a conffile"
done
# The installed policy loads, and lets a Debian template announce its features to dom0 as is.
cat >/tmp/system-info.json <<'JSON'
{"domains": {
  "dom0": {"tags": [], "type": "AdminVM", "power_state": "Running", "uuid": "00000000-0000-0000-0000-000000000000", "template_for_dispvms": false},
  "debian-12": {"tags": [], "type": "TemplateVM", "power_state": "Running", "uuid": "c9024a97-9b15-46cc-8341-38d75d5d421b", "template_for_dispvms": false}
}}
JSON
odyssey-policy eval --policy-dir /etc/qubes/policy.d --system-info /tmp/system-info.json \
  debian-12 dom0 qubes.FeaturesRequest >/tmp/policy.out 2>/tmp/policy.err ||
  { cat /tmp/policy.out /tmp/policy.err; fail "the installed policy does not allow qubes.FeaturesRequest to dom0"; }
[ "$(head -n 1 /tmp/policy.out)" = "allow target=dom0" ] && [ ! -s /tmp/policy.err ] ||
  { cat /tmp/policy.out /tmp/policy.err; fail "odyssey-policy eval: unexpected answer"; }
say "installed policy allows qubes.FeaturesRequest from a template to dom0"
grep -q '^backend = kvm$' /etc/odyssey/odysseyd.conf || fail "odysseyd.conf lacks backend = kvm"

sock=/run/odyssey-test/qubesd.sock
mkdir -p /run/odyssey-test
odysseyd --backend process --socket "$sock" --state-dir /var/lib/qubes >/tmp/odysseyd.log 2>&1 &
daemon=$!
# Waits for the socket while the daemon lives; a daemon that died fails at once with its log.
while [ ! -S "$sock" ]; do
  kill -0 "$daemon" 2>/dev/null || { cat /tmp/odysseyd.log; fail "odysseyd exited before serving"; }
  sleep 0.1
done
say "odysseyd serving"

export ODYSSEY_SOCKET="$sock"
qvm ls >/tmp/qvm-ls.out || fail "qvm ls exited $?"
grep -Eq '^dom0 +Running +AdminVM ' /tmp/qvm-ls.out || { cat /tmp/qvm-ls.out; fail "qvm ls does not list dom0"; }
qvm-ls >/tmp/qvm-ls2.out || fail "qvm-ls exited $?"
cmp -s /tmp/qvm-ls.out /tmp/qvm-ls2.out || fail "qvm-ls does not print what qvm ls prints"
[ "$(qvm-ls --raw-list)" = dom0 ] || fail "qvm-ls --raw-list is not 'dom0'"
[ "$(qubes-prefs default_kernel >/dev/null; echo $?)" = 0 ] || fail "qubes-prefs default_kernel failed"
status=0; qvm-device list 2>/tmp/qvm-device.err || status=$?
[ "$status" = 2 ] && grep -q 'not supported yet' /tmp/qvm-device.err || fail "qvm-device: exit $status, $(cat /tmp/qvm-device.err)"
cat /tmp/qvm-ls.out
say "qvm ls, qvm-ls answered with dom0"

kill -TERM "$daemon"
status=0; wait "$daemon" || status=$?
[ "$status" = 0 ] || { cat /tmp/odysseyd.log; fail "odysseyd exited $status on SIGTERM"; }
[ -f /var/lib/qubes/qubes.xml ] || fail "odysseyd saved no qubes.xml"
say "odysseyd stopped by SIGTERM"

# The whole Admin API suite on Debian's nodejs (the package's Depends, not the Node 20 we build with).
odyssey-conformance --backend process --report /tmp/conformance >/tmp/conformance.log 2>&1 ||
  { cat /tmp/conformance.log; fail "odyssey-conformance --backend process"; }
say "installed odyssey-conformance on the process backend: $(tail -n 1 /tmp/conformance.log)"

apt-get purge -y -qq odyssey >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; fail "apt-get purge"; }
[ ! -e /usr/bin/qvm ] && [ ! -e /usr/lib/odyssey ] && [ ! -e /etc/odyssey ] || fail "purge left files behind"
[ -f /var/lib/qubes/qubes.xml ] || fail "purge removed the state dir"
say "package purged, state dir kept"
INSIDE

# timeout signals unshare, whose PID namespace ends every process of the chroot with it.
if ! ONLINE=$online timeout --kill-after=10 "$limit" unshare --mount --pid --fork --kill-child --mount-proc="$chroot_dir/proc" \
  sh -c 'mount --bind /dev "$1/dev" && mount --bind "$2/archives" "$1/var/cache/apt/archives" &&
    mount --bind "$2/lists" "$1/var/lib/apt/lists" && exec chroot "$1" /bin/sh /tmp/inside.sh' \
  sh "$chroot_dir" "$cache" |
  while IFS= read -r line; do
    case $line in
      '@@ '*) step "${line#@@ }" ;;
      *) echo "  $line" ;;
    esac
  done; then
  echo "test-install: FAILED (a step failed, or the run passed its limit of $limit s)" >&2
  exit 1
fi
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "test-install: passed in %.1f s\n", b - a }'
