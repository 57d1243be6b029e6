#!/usr/bin/env bash
# Builds the nested Xen dom0: Xen's multiboot ELF, the Debian generic kernel (CONFIG_XEN_DOM0) and
# one initramfs with busybox, the Xen tools and block hotplug scripts, libvirtd + virtlogd + virsh
# with the libxl driver, and this machine's node. The repository itself is not inside: run.sh
# shares it over 9p, so code changes never rebuild the image.
#
#   build-dom0.sh [--cache-dir DIR] [--force]
#
#   --cache-dir DIR  where images are kept (default $ODYSSEY_GUEST_CACHE/xen or /var/cache/odyssey/xen)
#   --force          rebuild even when the cached image matches its inputs
#
# Rebuilt only when an input changes: the kernel, Xen, libvirt, node, busybox, util-linux, bash and
# these scripts. Prints `xen=PATH`, `kernel=PATH` and `initramfs=PATH` last.
# Needs: xen-hypervisor-4.17-amd64 xen-utils-4.17 linux-image-amd64 libvirt-daemon-driver-xen
#        libvirt-clients busybox-static cpio lz4, node.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ODYSSEY_GUEST_CACHE:+$ODYSSEY_GUEST_CACHE/xen}"
CACHE="${CACHE:-/var/cache/odyssey/xen}"
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -t 2 ] && [ -z "${CI:-}" ]; then progress() { echo "build-dom0: $*" >&2; }; else progress() { :; }; fi
die() { echo "build-dom0: $*" >&2; exit 1; }

# --- inputs
XEN_GZ=/boot/xen-4.17-amd64.gz
[ -f "$XEN_GZ" ] || die "no $XEN_GZ: apt-get install xen-hypervisor-4.17-amd64"
# The generic kernel: the cloud flavour is built without CONFIG_XEN_DOM0.
KERNEL="$(ls /boot/vmlinuz-*-amd64 2>/dev/null | grep -v cloud | sort -V | tail -1 || true)"
[ -n "$KERNEL" ] || die "no generic /boot/vmlinuz-*-amd64: apt-get install linux-image-amd64"
KV="${KERNEL#/boot/vmlinuz-}"
MODROOT="/lib/modules/$KV"
XENBIN=/usr/lib/xen-4.17/bin
[ -x "$XENBIN/xl" ] || die "no $XENBIN/xl: apt-get install xen-utils-4.17"
LIBXL_DRIVER=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_libxl.so
[ -f "$LIBXL_DRIVER" ] || die "no $LIBXL_DRIVER: apt-get install libvirt-daemon-driver-xen"
NODE="$(readlink -f "$(command -v node)")" || die "node not found"
BUSYBOX=/bin/busybox
"$BUSYBOX" --list >/dev/null 2>&1 && ! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is not static: apt-get install busybox-static"

PACKAGES="linux-image-$KV xen-hypervisor-4.17-amd64 xen-utils-4.17 libvirt-daemon libvirt-daemon-driver-xen
  libvirt-clients busybox-static util-linux bash coreutils iproute2 nftables"
KEY="$( {
  dpkg-query -W -f '${Package} ${Version}\n' $PACKAGES
  "$NODE" --version
  cat "$NODE" "$0" "$HERE/dom0-init.sh" | sha256sum
} | sha256sum | cut -c1-16)"
OUT="$CACHE/$KEY"

if [ "$FORCE" = 1 ] || [ ! -s "$OUT/initramfs" ]; then
  mkdir -p "$CACHE"
  WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  progress "building dom0 for kernel $KV, node $("$NODE" --version) (key $KEY)"
  R="$WORK/root"
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc/xen,lib/modules} \
    "$R"/var/{lib/xen,lib/xenstored,log/xen/console,lib/libvirt/libxl,log/libvirt/libxl,cache/libvirt}
  # virsh looks for /var/run/libvirt, libvirtd listens in /run/libvirt.
  ln -s ../run "$R/var/run"
  cp "$BUSYBOX" "$R/bin/busybox"
  # Relative links: `busybox --install -s` would point at the host's absolute path.
  (cd "$R/bin" && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done)

  # Programs and their shared libraries (+ libgcc_s, which glibc dlopens and ldd does not list).
  copy_with_libs() {
    local f
    for f in "$@" $(for b in "$@"; do ldd "$b" | grep -o '/[^ ]*'; done | sort -u) \
      /lib/x86_64-linux-gnu/libgcc_s.so.1; do
      mkdir -p "$R$(dirname "$f")"
      cp -L "$f" "$R$f"
    done
  }
  progress "copying Xen tools, libvirt, node"
  copy_with_libs "$XENBIN"/{xl,xenstored,xenconsoled,xen-init-dom0,libxl-save-helper,vchan-socket-proxy} \
    /usr/bin/xenstore /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/virsh "$LIBXL_DRIVER" "$NODE"
  # odysseyd's vchan transport loads libxenvchan through koffi (koffi itself comes with the repository).
  VCHAN_LIB=/usr/lib/x86_64-linux-gnu/libxenvchan.so.4.17
  copy_with_libs "$VCHAN_LIB"
  ln -s "$(basename "$VCHAN_LIB")" "$R/usr/lib/x86_64-linux-gnu/libxenvchan.so"
  for t in read write rm ls list exists chmod watch; do ln -s xenstore "$R/usr/bin/xenstore-$t"; done
  ln -s "$XENBIN/xl" "$R/usr/sbin/xl"
  # /etc/xen/scripts/block (file-backed PV disks → loop device → blkback) is a bash script that
  # parses util-linux's `losetup -a` and uses flock and GNU stat: busybox's versions differ.
  copy_with_libs /usr/bin/bash /usr/sbin/losetup /usr/bin/flock /usr/bin/stat
  # odysseyd copies volumes with GNU cp (--sparse=always --reflink=never); /usr/bin precedes busybox in PATH.
  copy_with_libs /usr/bin/cp
  # The Xen backend's uplink: iproute2 (bridges; vif-bridge's `ip link set master`) and nft (its NAT).
  copy_with_libs /usr/bin/ip /usr/sbin/nft
  ln -sf ../usr/bin/bash "$R/bin/bash"
  cp -a /etc/xen/xl.conf /etc/xen/scripts "$R/etc/xen/"
  cp -a /etc/libvirt "$R/etc/"
  mkdir -p "$R/usr/share"
  cp -a /usr/share/libvirt "$R/usr/share/"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
  printf 'root:x:0:\n' >"$R/etc/group"

  # Kernel modules with their dependencies first (modules.dep), loaded in that order by /init.
  # No modprobe finds these flat files: what the uplink's nftables table uses is loaded at boot
  # (crc32c_generic first: libcrc32c, under nf_tables, asks the crypto API for crc32c when loaded).
  MODULES="xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc xen-blkback loop
    virtio_pci 9pnet_virtio 9p xen-netback bridge crc32c_generic nft_chain_nat nft_nat nft_masq"
  declare -A DEPS SEEN
  while IFS=: read -r mod deps; do
    DEPS["$(basename "$mod" .ko)"]="$deps"
    DEPS["$(basename "$mod" .ko)-path"]="$mod"
  done <"$MODROOT/modules.dep"
  ORDER=()
  visit() {
    local d
    [ -n "${DEPS[$1-path]:-}" ] || die "no module $1 for $KV"
    [ -z "${SEEN[$1]:-}" ] || return 0
    SEEN[$1]=1
    for d in ${DEPS[$1]}; do visit "$(basename "$d" .ko)"; done
    ORDER+=("$1")
    cp "$MODROOT/${DEPS[$1-path]}" "$R/lib/modules/$1.ko"
  }
  for m in $MODULES; do visit "$m"; done
  printf '%s\n' "${ORDER[@]}" >"$R/lib/modules/order"

  cp "$HERE/dom0-init.sh" "$R/init"
  chmod +x "$R/init"
  progress "packing the initramfs"
  # lz4 (legacy frame): under TCG the kernel unpacks it faster than gzip or zstd.
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | lz4 -q -l -1 >"$WORK/initramfs")
  mkdir -p "$OUT.tmp"
  # QEMU's multiboot loader takes the plain ELF, not Debian's gzipped one.
  zcat "$XEN_GZ" >"$OUT.tmp/xen"
  cp "$KERNEL" "$OUT.tmp/vmlinuz"
  mv "$WORK/initramfs" "$OUT.tmp/initramfs"
  rm -rf "$OUT"
  mv "$OUT.tmp" "$OUT"
else
  progress "cached dom0 $OUT is up to date"
fi

echo "xen=$OUT/xen"
echo "kernel=$OUT/vmlinuz"
echo "initramfs=$OUT/initramfs"
