#!/usr/bin/env bash
# Builds the Odyssey KVM guest image: a Debian cloud kernel plus an initramfs holding busybox,
# this machine's node and the qrexec agent on the KVM vchan transport (virtio-serial).
#
#   build-guest-image.sh [--cache-dir DIR] [--install-kernel-dir DIR] [--force]
#
#   --cache-dir DIR           where images are kept (default $ODYSSEY_GUEST_CACHE or /var/cache/odyssey/guest)
#   --install-kernel-dir DIR  also install into DIR/<kernel version>/{vmlinuz,initramfs}, the layout
#                             of core's linux-kernel pool (<state dir>/vm-kernels)
#   --force                   rebuild even when the cached image matches its inputs
#
# An image is rebuilt only when its inputs change: kernel version, node version, the agent
# bundle and this script. Prints `kernel=PATH`, `initramfs=PATH` and `version=KERNEL_VERSION` last.
# The guest's /init prints ODYSSEY-QREXEC-READY on ttyS0 once the agent listens on its vchan.
# Needs: linux-image-cloud-amd64 busybox-static cpio lz4, node, and the repo's npm packages (esbuild).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ODYSSEY_GUEST_CACHE:-/var/cache/odyssey/guest}"
INSTALL_DIR=""
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE="$2"; shift 2 ;;
    --install-kernel-dir) INSTALL_DIR="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -t 2 ]; then progress() { echo "build-guest-image: $*" >&2; }; else progress() { :; }; fi
die() { echo "build-guest-image: $*" >&2; exit 1; }

# --- inputs
KERNEL="$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)"
[ -n "$KERNEL" ] || die "no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64"
KV="${KERNEL#/boot/vmlinuz-}"
MODDIR="/lib/modules/$KV/kernel"
[ -d "$MODDIR" ] || die "no $MODDIR for kernel $KV"
NODE="$(command -v node)" || die "node not found"
NODE="$(readlink -f "$NODE")"
NODE_VERSION="$("$NODE" --version)"
BUSYBOX=/bin/busybox
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic' \
  || die "$BUSYBOX is not static: apt-get install busybox-static"
ESBUILD="$ROOT/node_modules/.bin/esbuild"
[ -x "$ESBUILD" ] || die "esbuild missing: run npm install in $ROOT"

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

progress "bundling the agent (esbuild)"
# Workspace packages resolve to their sources, so the bundle never depends on stale dist trees.
"$ESBUILD" "$ROOT/scripts/guest-agent-kvm.ts" --bundle --platform=node --format=esm --target=node20 \
  --log-level=warning \
  --alias:@odyssey/core="$ROOT/core/src" \
  --alias:@odyssey/vchan="$ROOT/vchan/src" \
  --alias:@odyssey/agent="$ROOT/agent/src" \
  --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
  --outfile="$WORK/agent.mjs"
BUNDLE_HASH="$(sha256sum "$WORK/agent.mjs" | cut -c1-64)"
SCRIPT_HASH="$(sha256sum "$0" | cut -c1-64)"
KEY="$(printf '%s\n' "$KV" "$NODE_VERSION" "$BUNDLE_HASH" "$SCRIPT_HASH" | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"

if [ "$FORCE" = 1 ] || [ ! -s "$OUT/initramfs" ] || [ ! -s "$OUT/vmlinuz" ]; then
  progress "building initramfs for kernel $KV, node $NODE_VERSION (key $KEY)"
  R="$WORK/root"
  mkdir -p "$R"/{bin,sbin,usr/bin,proc,sys,dev,tmp,run,root,etc/acpi/PWRF,lib/modules,opt/odyssey,var}
  ln -s ../run "$R/var/run"
  cp "$BUSYBOX" "$R/bin/busybox"
  # Relative links: `busybox --install -s` would point at the host's absolute path.
  (cd "$R/bin" && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done)
  # node and its shared libraries (+ libgcc_s, which glibc dlopens and ldd does not list)
  copy_with_libs() {
    local f
    mkdir -p "$R$(dirname "$1")"
    cp -L "$1" "$R$1"
    for f in $(ldd "$1" | grep -o '/[^ ]*') /lib/x86_64-linux-gnu/libgcc_s.so.1; do
      mkdir -p "$R$(dirname "$f")"
      cp -L "$f" "$R$f"
    done
  }
  copy_with_libs "$NODE"
  [ "$NODE" = /usr/bin/node ] || ln -s "$NODE" "$R/usr/bin/node"
  cp "$WORK/agent.mjs" "$R/opt/odyssey/agent.mjs"
  # Modules in load order (nested-virtualization.md §4): virtio transport, then the console/serial
  # ports; ACPI button + evdev let busybox acpid see the power button (clean ACPI shutdown).
  MODULES="virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev virtio/virtio_pci_legacy_dev
    virtio/virtio_pci char/virtio_console block/virtio_blk acpi/button input/evdev"
  for m in $MODULES; do
    src="$MODDIR/drivers/$m.ko"
    [ -f "$src" ] || src="$src.xz"
    [ -f "$src" ] || die "missing module $m for $KV"
    case "$src" in
      *.xz) xz -dc "$src" >"$R/lib/modules/$(basename "$m").ko" ;;
      *) cp "$src" "$R/lib/modules/" ;;
    esac
  done
  printf '%s\n' $MODULES | xargs -n1 basename >"$R/lib/modules/order"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
  printf 'root:x:0:\n' >"$R/etc/group"
  cat >"$R/etc/acpi/PWRF/00000080" <<'EOS'
#!/bin/sh
echo "odyssey-guest: ACPI power button, powering off" >/dev/console
kill -TERM $(pidof node) 2>/dev/null
sync
poweroff -f
EOS
  chmod +x "$R/etc/acpi/PWRF/00000080"
  # The one qrexec service every qube has: a shell reading its commands from the caller.
  mkdir -p "$R/etc/qubes-rpc"
  printf '#!/bin/sh\nexec /bin/sh\n' >"$R/etc/qubes-rpc/qubes.VMShell"
  chmod +x "$R/etc/qubes-rpc/qubes.VMShell"
  cat >"$R/init" <<'EOS'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin HOME=/root UV_THREADPOOL_SIZE=16
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /dev/pts /run/qubes /var/log && mount -t devpts devpts /dev/pts
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
acpid -c /etc/acpi -l /dev/null
echo "odyssey-guest: kernel $(uname -r) up"
node /opt/odyssey/agent.mjs </dev/null >/dev/console 2>&1 &
while :; do
  wait
  sleep 3600
done
EOS
  chmod +x "$R/init"
  # lz4 (legacy frame, what the kernel reads): under TCG the kernel unpacks it ~0.5 s faster
  # than zstd and ~0.8 s faster than gzip, and node makes this archive ~100 MB.
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | lz4 -q -l -1 >"$WORK/initramfs")
  mkdir -p "$OUT.tmp"
  cp "$KERNEL" "$OUT.tmp/vmlinuz"
  mv "$WORK/initramfs" "$OUT.tmp/initramfs"
  printf 'kernel_version=%s\nnode_version=%s\nagent_bundle_sha256=%s\n' "$KV" "$NODE_VERSION" "$BUNDLE_HASH" >"$OUT.tmp/inputs"
  chmod -R a+rX "$OUT.tmp"
  rm -rf "$OUT"
  mv "$OUT.tmp" "$OUT"
else
  progress "cached image $OUT is up to date"
fi
ln -sfn "$KEY" "$CACHE/current"
chmod a+rx "$CACHE"

if [ -n "$INSTALL_DIR" ]; then
  mkdir -p "$INSTALL_DIR/$KV"
  cp "$OUT/vmlinuz" "$INSTALL_DIR/$KV/vmlinuz.tmp" && mv "$INSTALL_DIR/$KV/vmlinuz.tmp" "$INSTALL_DIR/$KV/vmlinuz"
  cp "$OUT/initramfs" "$INSTALL_DIR/$KV/initramfs.tmp" && mv "$INSTALL_DIR/$KV/initramfs.tmp" "$INSTALL_DIR/$KV/initramfs"
  progress "installed into $INSTALL_DIR/$KV"
fi

echo "version=$KV"
echo "kernel=$OUT/vmlinuz"
echo "initramfs=$OUT/initramfs"
