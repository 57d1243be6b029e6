#!/usr/bin/env bash
# A private libvirtd + virtlogd for tests, isolated from any other libvirtd on the machine.
#
#   libvirtd-test.sh start DIR    start; prints socket=, pid=, virtlogd_pid= (also written to DIR/env)
#   libvirtd-test.sh restart DIR  kill libvirtd and start it again in the same namespace and state
#   libvirtd-test.sh stop DIR     stop both daemons (by their pids) and remove DIR's runtime files
#
# The daemons run in their own mount namespace with private tmpfs copies of libvirt's run, config,
# state, cache and log directories, so domains, pools and sockets never mix with another daemon's.
# Only DIR (which should live outside those directories, e.g. under /tmp) is shared with the host:
# it holds the sockets (unix_sock_dir), the pid files and the logs, so processes outside the
# namespace reach the daemon at DIR/libvirt-sock and can stop it by pid.
# Needs root and: libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system qemu-system-x86 tini.
# LIBVIRTD_TEST_LXC=1 also readies the namespace for libvirt's LXC driver (libvirt-daemon-driver-lxc):
# libvirt 9.0's libvirt_lxc fails on the host's hybrid cgroup layout while the empty cgroup2 mount
# /sys/fs/cgroup/unified is there (reference/nested-virtualization.md §3), so it is unmounted in the
# daemons' namespace only; the host keeps it.
set -euo pipefail

PRIVATE_DIRS=(/run/libvirt /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt)
# QEMU capability probing takes ~10 s on a cold cache, so the probe results outlive each daemon.
# Only test daemons share this directory, and libvirt replaces its cache files atomically.
QEMU_CACHE="${LIBVIRTD_TEST_QEMU_CACHE:-/var/cache/odyssey-libvirtd-test/qemu}"

usage() {
  echo "usage: $0 start|restart|stop DIR" >&2
  exit 2
}

pid_of() {
  local f="$1/$2.pid"
  [ -s "$f" ] && cat "$f"
}

alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

wait_gone() {
  local pid="$1" i
  for i in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

wait_socket() {
  local dir="$1" pid="$2" i
  # libvirtd daemonizes before its drivers are ready; the socket only answers once they are.
  for i in $(seq 1 300); do
    if ! alive "$(pid_of "$dir" libvirtd || true)" && [ "$i" -gt 20 ]; then
      echo "libvirtd exited during startup; see $dir/libvirtd.log" >&2
      return 1
    fi
    if [ -S "$dir/libvirt-sock" ] && timeout 5 virsh -c "test+unix:///default?socket=$dir/libvirt-sock" \
      version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "libvirtd did not answer on $dir/libvirt-sock within 30 s (pid $pid)" >&2
  return 1
}

write_config() {
  local dir="$1"
  cat >"$dir/libvirtd.conf" <<EOF
unix_sock_dir = "$dir"
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "2:file:$dir/libvirtd.log"
EOF
  cat >"$dir/virtlogd.conf" <<EOF
log_outputs = "3:file:$dir/virtlogd.log"
EOF
}

# Without udev, /dev/kvm is root-only (0600). libvirt 9 then probes QEMU with KVM but finds KVM
# unusable for the qemu user, so it calls its capability cache stale on every lookup and re-probes
# QEMU (~4 s) again and again (30 s for one define). A private node with udev's usual permissions
# (root:kvm 0660) makes both views agree; the host's node is untouched.
private_kvm_node() {
  local nodes major minor
  [ -c /dev/kvm ] && getent group kvm >/dev/null || return 0
  nodes="$(mktemp -d)"
  mount -t tmpfs -o mode=0755 tmpfs "$nodes"
  major=$((16#$(stat -c %t /dev/kvm)))
  minor=$((16#$(stat -c %T /dev/kvm)))
  mknod -m 0660 "$nodes/kvm" c "$major" "$minor"
  chgrp kvm "$nodes/kvm"
  mount --bind "$nodes/kvm" /dev/kvm
  umount -l "$nodes"
  rmdir "$nodes"
}

# libvirtd in the foreground under tini as a child subreaper (tini -s), both in the background.
# libvirt daemonizes QEMU, so QEMU's parent is the nearest subreaper, else PID 1; and a destroy
# returns only once the QEMU pid is gone, zombie included (libvirt polls kill(pid, 0) every 200 ms).
# A PID 1 that reaps orphans late (a container's or a microVM's init; this host's reaps every ~2 s)
# adds that wait to every kill: a preloaded disposable's round trip was 3.4 s, 2 s of it here.
# tini reaps as each QEMU exits. libvirtd writes its own pid file; stopping it ends tini too.
start_libvirtd() {
  local dir="$1"
  setsid tini -s -- libvirtd -f "$dir/libvirtd.conf" -p "$dir/libvirtd.pid" \
    </dev/null >>"$dir/libvirtd.stderr" 2>&1 &
}

# Runs inside the new mount namespace: make the private directories, then start both daemons.
in_namespace() {
  local dir="$1" stage d name
  stage="$(mktemp -d)"
  mount -t tmpfs tmpfs "$stage"
  for d in "${PRIVATE_DIRS[@]}"; do
    name="${d//\//_}"
    mkdir -p "$stage/$name" "$d"
    cp -a "$d/." "$stage/$name/"
    mount -t tmpfs -o mode=0755 tmpfs "$d"
    cp -a "$stage/$name/." "$d/"
  done
  umount "$stage"
  rmdir "$stage"
  mkdir -p "$QEMU_CACHE" /var/cache/libvirt/qemu
  mount --bind "$QEMU_CACHE" /var/cache/libvirt/qemu
  private_kvm_node
  if [ "${LIBVIRTD_TEST_LXC:-}" = 1 ] && mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
    echo "libvirtd-test: LXC: unmounted /sys/fs/cgroup/unified in libvirtd's private mount namespace" >&2
  fi
  virtlogd -d -f "$dir/virtlogd.conf" -p "$dir/virtlogd.pid"
  start_libvirtd "$dir"
}

start_libvirtd_again() {
  local dir="$1" logpid
  logpid="$(pid_of "$dir" virtlogd)"
  alive "$logpid" || {
    echo "virtlogd (namespace holder) is not running; use start" >&2
    exit 1
  }
  nsenter --mount="/proc/$logpid/ns/mnt" bash -c "$(declare -f start_libvirtd); start_libvirtd '$dir'"
}

report() {
  local dir="$1" pid logpid
  pid="$(pid_of "$dir" libvirtd)"
  logpid="$(pid_of "$dir" virtlogd)"
  printf 'socket=%s\npid=%s\nvirtlogd_pid=%s\n' "$dir/libvirt-sock" "$pid" "$logpid" | tee "$dir/env"
}

stop() {
  local dir="$1" pid logpid
  pid="$(pid_of "$dir" libvirtd || true)"
  logpid="$(pid_of "$dir" virtlogd || true)"
  if alive "$pid"; then
    kill "$pid"
    wait_gone "$pid"
  fi
  if alive "$logpid"; then
    kill "$logpid"
    wait_gone "$logpid"
  fi
  rm -f "$dir"/libvirt-sock "$dir"/libvirt-sock-ro "$dir"/libvirt-admin-sock "$dir"/*.pid "$dir/env"
}

[ $# -eq 2 ] || usage
cmd="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"

case "$cmd" in
  start)
    if alive "$(pid_of "$dir" libvirtd || true)"; then
      echo "a test libvirtd is already running for $dir" >&2
      exit 1
    fi
    write_config "$dir"
    rm -f "$dir/libvirtd.pid" "$dir/virtlogd.pid"
    unshare -m --propagation private bash -c "$(declare -p PRIVATE_DIRS QEMU_CACHE); LIBVIRTD_TEST_LXC='${LIBVIRTD_TEST_LXC:-}'; $(declare -f private_kvm_node start_libvirtd in_namespace); in_namespace '$dir'"
    wait_socket "$dir" "$(pid_of "$dir" libvirtd || true)"
    report "$dir"
    ;;
  restart)
    pid="$(pid_of "$dir" libvirtd || true)"
    if alive "$pid"; then
      kill "$pid"
      wait_gone "$pid"
    fi
    rm -f "$dir/libvirtd.pid"
    start_libvirtd_again "$dir"
    wait_socket "$dir" "$(pid_of "$dir" libvirtd || true)"
    report "$dir"
    ;;
  stop)
    stop "$dir"
    ;;
  *) usage ;;
esac
