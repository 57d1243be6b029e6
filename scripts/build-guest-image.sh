#!/usr/bin/env bash
# Builds the Odyssey guest image: a Debian cloud kernel plus an initramfs holding busybox,
# this machine's node and the qrexec agent, for KVM (vchan over virtio-serial) or as a Xen PV
# domU (vchan over libxenvchan through koffi; the cloud kernel is a fine domU, not a dom0).
#
#   build-guest-image.sh [--flavour kvm|xen] [--cache-dir DIR] [--install-kernel-dir DIR] [--force]
#
#   --flavour kvm|xen         the platform (default kvm); the agent is scripts/guest-agent-FLAVOUR.ts
#   --cache-dir DIR           where images are kept (default $ODYSSEY_GUEST_CACHE or /var/cache/odyssey/guest)
#   --install-kernel-dir DIR  also install into DIR/<kernel version>/{vmlinuz,initramfs}, the layout
#                             of core's linux-kernel pool (<state dir>/vm-kernels)
#   --force                   rebuild even when the cached image matches its inputs
#
# An image is rebuilt only when its inputs change: flavour, kernel version, node version, the agent
# bundle and this script. Prints `kernel=PATH`, `initramfs=PATH` and `version=KERNEL_VERSION` last.
# The guest prints ODYSSEY-QREXEC-READY on its console (kvm: ttyS0, xen: hvc0) once the agent
# listens on its vchan.
# Needs: linux-image-cloud-amd64 busybox-static cpio lz4, node, and the repo's npm packages
# (esbuild; koffi for xen), and for xen libxenvchan (xen-utils-4.17 or libxen-dev).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ODYSSEY_GUEST_CACHE:-/var/cache/odyssey/guest}"
INSTALL_DIR=""
FORCE=0
FLAVOUR=kvm
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE="$2"; shift 2 ;;
    --install-kernel-dir) INSTALL_DIR="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --flavour) FLAVOUR="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -t 2 ]; then progress() { echo "build-guest-image: $*" >&2; }; else progress() { :; }; fi
die() { echo "build-guest-image: $*" >&2; exit 1; }
case "$FLAVOUR" in kvm|xen) ;; *) die "unknown flavour $FLAVOUR (kvm or xen)" ;; esac

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
AGENT="$ROOT/scripts/guest-agent-$FLAVOUR.ts"
[ -f "$AGENT" ] || die "no $AGENT"
# koffi finds its native module relative to its own files, so it stays a package beside the bundle.
EXTERNAL=()
if [ "$FLAVOUR" = xen ]; then
  KOFFI_NATIVE="$ROOT/node_modules/@koromix/koffi-linux-x64"
  [ -d "$ROOT/node_modules/koffi" ] && [ -d "$KOFFI_NATIVE" ] || die "koffi missing: run npm install in $ROOT"
  VCHAN_LIB=/usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17
  [ -f "$VCHAN_LIB" ] || die "no $VCHAN_LIB: apt-get install xen-utils-4.17"
  EXTERNAL=(--external:koffi)
fi

mkdir -p "$CACHE"
# One build of a flavour at a time: two would share $OUT.tmp, and the later one's rm -rf "$OUT"
# would take the tree from under whatever the first one's caller started from it.
exec 9>"$CACHE/.lock-$FLAVOUR"
flock 9
WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

progress "bundling the agent, qrexec-client-vm and qvm (esbuild)"
# Workspace packages resolve to their sources, so the bundles never depend on stale dist trees.
bundle() { # ENTRY OUT
  "$ESBUILD" "$1" --bundle --platform=node --format=esm --target=node20 \
    --log-level=warning "${EXTERNAL[@]}" \
    --alias:@odyssey/core="$ROOT/core/src" \
    --alias:@odyssey/vchan="$ROOT/vchan/src" \
    --alias:@odyssey/agent="$ROOT/agent/src" \
    --alias:@odyssey/client="$ROOT/client/src" \
    --alias:@odyssey/qubesdb="$ROOT/qubesdb/src" \
    --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
    --outfile="$2"
}
bundle "$AGENT" "$WORK/agent.mjs"
bundle "$ROOT/agent/src/client-vm-main.ts" "$WORK/qrexec-client-vm.mjs"
bundle "$ROOT/client/src/cli/main.ts" "$WORK/qvm.mjs"
bundle "$ROOT/agent/src/qubesdb-cmd-main.ts" "$WORK/qubesdb-cmd.mjs"
BUNDLE_HASH="$(cat "$WORK"/*.mjs | sha256sum | cut -c1-64)"
SCRIPT_HASH="$(sha256sum "$0" | cut -c1-64)"
KEY="$(printf '%s\n' "$FLAVOUR" "$KV" "$NODE_VERSION" "$BUNDLE_HASH" "$SCRIPT_HASH" | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"

if [ "$FORCE" = 1 ] || [ ! -s "$OUT/initramfs" ] || [ ! -s "$OUT/vmlinuz" ]; then
  progress "building $FLAVOUR initramfs for kernel $KV, node $NODE_VERSION (key $KEY)"
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
  cp "$WORK"/*.mjs "$R/opt/odyssey/"
  # The guest's own programs: qrexec-client-vm opens its vchans through the agent (which owns the
  # KVM port; on Xen it keeps the two flavours alike), and qvm calls the Admin API through it.
  printf '#!/bin/sh\nODYSSEY_VCHAN_PROXY=/run/qubes/vchan-proxy exec node /opt/odyssey/qrexec-client-vm.mjs "$@"\n' \
    >"$R/usr/bin/qrexec-client-vm"
  printf '#!/bin/sh\nexec node /opt/odyssey/qvm.mjs "$@"\n' >"$R/usr/bin/qvm"
  chmod +x "$R/usr/bin/qrexec-client-vm" "$R/usr/bin/qvm"
  # upstream's QubesDB commands, each the one program told its command (it talks to the agent's socket).
  for cmd in read write rm multiread list watch; do
    printf '#!/bin/sh\nexec node /opt/odyssey/qubesdb-cmd.mjs -c %s "$@"\n' "$cmd" >"$R/usr/bin/qubesdb-$cmd"
    chmod +x "$R/usr/bin/qubesdb-$cmd"
  done
  if [ "$FLAVOUR" = kvm ]; then
    # Modules in load order (nested-virtualization.md §4): virtio transport, then the console/serial
    # ports; ACPI button + evdev let busybox acpid see the power button (clean ACPI shutdown);
    # pvpanic(-mmio, which also drives the ISA port) tells the host of a kernel panic (a crash);
    # virtio_net (with failover, which lives outside drivers/) for the KVM backend's network links.
    MODULES="virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev virtio/virtio_pci_legacy_dev
      virtio/virtio_pci char/virtio_console block/virtio_blk acpi/button input/evdev
      misc/pvpanic/pvpanic misc/pvpanic/pvpanic-mmio ../net/core/failover net/net_failover net/virtio_net"
  else
    # libxenvchan's devices (event channels, grant alloc/map), xenfs for libxenstore's
    # /proc/xen/xenbus, blkfront for the PV disks. The console (hvc0) is built in.
    MODULES="xen/xen-evtchn xen/xen-gntdev xen/xen-gntalloc xen/xen-privcmd xen/xenfs/xenfs block/xen-blkfront"
    mkdir -p "$R/opt/odyssey/node_modules/@koromix"
    cp -a "$ROOT/node_modules/koffi" "$R/opt/odyssey/node_modules/"
    cp -a "$KOFFI_NATIVE" "$R/opt/odyssey/node_modules/@koromix/"
    copy_with_libs "$VCHAN_LIB"
    ln -s "$(basename "$VCHAN_LIB")" "$R/usr/lib/x86_64-linux-gnu/libxenvchan.so"
  fi
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
  # A clean shutdown: kvm's ACPI power button (busybox acpid) and Xen's xenstore control/shutdown
  # (the kernel runs /sbin/poweroff) end here.
  cat >"$R/sbin/odyssey-shutdown" <<'EOS'
#!/bin/sh
echo "odyssey-guest: shutdown requested, powering off" >/dev/console
kill -TERM $(pidof node) 2>/dev/null
sync
/bin/poweroff -f
EOS
  chmod +x "$R/sbin/odyssey-shutdown"
  if [ "$FLAVOUR" = kvm ]; then
    ln -s /sbin/odyssey-shutdown "$R/etc/acpi/PWRF/00000080"
    echo 'acpid -c /etc/acpi -l /dev/null' >"$R/etc/platform-init"
  else
    ln -s odyssey-shutdown "$R/sbin/poweroff"
    echo 'mount -t xenfs xenfs /proc/xen' >"$R/etc/platform-init"
  fi
  # A guest that crashes as it boots (rdinit=/sbin/odyssey-crash): init exiting is a kernel panic,
  # and with the modules loaded first, kvm's pvpanic driver is there to report it.
  cat >"$R/sbin/odyssey-crash" <<'EOS'
#!/bin/sh
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
echo "odyssey-guest: crashing on purpose (init exits)" >/dev/console
exit 1
EOS
  chmod +x "$R/sbin/odyssey-crash"
  # The one qrexec service every qube has: a shell reading its commands from the caller. busybox sh
  # reads a pipe ahead, which would swallow the input qvm-run sends after its `COMMAND; exit` line:
  # `read` takes the lines byte by byte up to that one (or EOF), and the rest is left to the command.
  mkdir -p "$R/etc/qubes-rpc"
  cat >"$R/etc/qubes-rpc/qubes.VMShell" <<'EOS'
#!/bin/sh
script=
while :; do
  IFS= read -r line || { script="$script$line"; break; }
  script="$script$line
"
  case $line in *'; exit') break ;; esac
done
exec /bin/sh -c "$script"
EOS
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
. /etc/platform-init
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
  printf 'kernel_version=%s\nnode_version=%s\nbundles_sha256=%s\n' "$KV" "$NODE_VERSION" "$BUNDLE_HASH" >"$OUT.tmp/inputs"
  chmod -R a+rX "$OUT.tmp"
  rm -rf "$OUT"
  mv "$OUT.tmp" "$OUT"
else
  progress "cached image $OUT is up to date"
fi
LINK=current
[ "$FLAVOUR" = kvm ] || LINK="current-$FLAVOUR"
ln -sfn "$KEY" "$CACHE/$LINK"
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
