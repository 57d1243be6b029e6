#!/usr/bin/env bash
# Runs the lvm_thin pool test (core/test/storage/lvm-thin.test.ts) inside a QEMU guest booted
# with Debian's generic kernel, for hosts whose own kernel has no device-mapper (there the test
# skips). The guest sees this machine's root read-only over 9p with a tmpfs overlay on top, so
# it runs the same node, lvm2 and worktree, and nothing it writes reaches the host.
#
# Usage: scripts/lvm-guest-test.sh        (as root; needs qemu-system-x86, busybox-static and
#                                          linux-image-amd64, all in scripts/setup.sh)
# Prints the guest's vitest output; exits with vitest's status, 2 when the guest could not run it.
# Takes about 6 minutes under TCG on a loaded 2-core machine (most of it node importing vitest).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kver=$(find /lib/modules -maxdepth 1 -name '*-amd64' ! -name '*cloud*' -printf '%f\n' | sort -V | tail -1)
kernel=/boot/vmlinuz-$kver
if [ -z "$kver" ] || [ ! -r "$kernel" ]; then
  echo "SKIP: no Debian generic kernel (linux-image-amd64) to boot the guest with" >&2
  exit 0
fi
work=$(mktemp -d /tmp/odyssey-lvm-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work"/root/{bin,mods,proc,sys,dev,lower,upper,newroot}
cp /bin/busybox "$work/root/bin/busybox"
# Enough to mount the host's root over virtio-9p with an overlay; the rest loads from there.
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay"
for m in $mods; do cp "$(modinfo -k "$kver" -n "$m")" "$work/root/mods/"; done
cat >"$work/root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do insmod /mods/\$m.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 host /lower
mount -t tmpfs -o size=2g tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
mount -t proc proc /newroot/proc; mount -t sysfs sys /newroot/sys; mount -t devtmpfs dev /newroot/dev
mount -t tmpfs tmpfs /newroot/run; mount -t tmpfs tmpfs /newroot/tmp
chroot /newroot /bin/bash -c 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=1
  modprobe dm_thin_pool && modprobe loop
  cd "$repo" && ./node_modules/.bin/vitest run core/test/storage/lvm-thin.test.ts 2>&1
  echo "GUEST VITEST EXIT \$?"'
poweroff -f
EOF
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initrd.gz")

timeout 2400 qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 2 -m 4096 -no-reboot \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet loglevel=3 panic=-1" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  -serial "file:$work/console.log" -monitor none -display none -nographic >/dev/null 2>&1 || true
tr -d '\r' <"$work/console.log" | sed -n '/RUN/,$p'
status=$(grep -ao 'GUEST VITEST EXIT [0-9]*' "$work/console.log" | awk '{print $4}')
if [ -z "$status" ]; then
  echo "the guest did not run the test (console log above)" >&2
  exit 2
fi
exit "$status"
