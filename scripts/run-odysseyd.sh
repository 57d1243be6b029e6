#!/usr/bin/env bash
# The main job: odysseyd on a backend (default kvm), serving the Admin API until SIGTERM.
# For kvm it starts virtlogd and libvirtd when they are not running (no systemd here) and
# installs the guest kernel image into the state dir's kernel pool, so that
# `qvm global-prefs default_kernel <version>` and `qvm start` work right away.
set -euo pipefail
cd "$(dirname "$0")/.."
SOCKET=${ODYSSEY_SOCKET:-/run/odyssey/qubesd.sock}
STATE=${ODYSSEY_STATE_DIR:-/var/lib/odyssey}
BACKEND=${ODYSSEY_BACKEND:-kvm}

# QEMU runs as libvirt's own user and must reach the disk images under the state dir.
mkdir -p "$STATE" "$(dirname "$SOCKET")"
chmod 0711 "$STATE"
if [ "$BACKEND" = kvm ]; then
  [ -S /run/libvirt/virtlogd-sock ] || virtlogd -d
  # Under tini as a child subreaper, as scripts/libvirtd-test.sh says why: a kill waits for QEMU to be
  # reaped, which a container's or microVM's PID 1 may do seconds late.
  if [ ! -S /run/libvirt/libvirt-sock ]; then
    mkdir -p /var/log/libvirt
    setsid tini -s -- libvirtd </dev/null >>/var/log/libvirt/libvirtd.stderr 2>&1 &
    # In the foreground libvirtd has no readiness pipe as `-d` has: wait for its socket (bounded).
    for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
    [ -S /run/libvirt/libvirt-sock ] || { echo "libvirtd did not start: /var/log/libvirt/libvirtd.stderr" >&2; exit 1; }
  fi
  bash scripts/build-guest-image.sh --install-kernel-dir "$STATE/vm-kernels" | sed -n 's/^version=/guest kernel: /p'
fi
exec node core/dist/daemon/main.js --socket "$SOCKET" --state-dir "$STATE" --backend "$BACKEND"
