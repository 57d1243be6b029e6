#!/usr/bin/env bash
# The ceiling under the KVM vchan mux: what one virtio-serial port of a QEMU guest moves with no
# framing, each way, for a few block sizes (busybox dd in the guest, a node socket on the host);
# what node in the guest gets from the same port, read and written the ways the agent could; and
# what a memcpy loop reaches through an ivshmem-plain BAR backed by host shared memory, the other
# transport issue 15 names. Boots the busybox guest of scripts/build-guest-image.sh once (TCG
# here: no /dev/kvm) with a probe as its init instead of the agent; about 50 s. Findings:
# bench/vchan.md.
#
#   bench/kvm-port.sh [--mib N]   (default 32 MiB per run; root, or ODYSSEY_GUEST_CACHE set;
#                                  needs gcc and a static libc for the ivshmem copy loop)
#   KEEP=1 bench/kvm-port.sh      keeps the work directory (the guest's whole console)
#
# Prints one `probe:` line per run in the guest (MB/s) and the host's view of each guest→host run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIB=32
[ "${1:-}" = --mib ] && MIB="$2"
SIZES="4096 65536 1048576"

WORK="$(mktemp -d)"
QEMU_PID=""
cleanup() {
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK" "/dev/shm/odyssey-kvm-port-$$"
}
trap cleanup EXIT

eval "$(bash "$ROOT/scripts/build-guest-image.sh" | grep -E '^(kernel|initramfs)=')"

# The probe's init, as a plain cpio archive before the image's (the kernel unpacks both; the
# image's legacy lz4 has no end marker, so nothing can follow it).
mkdir -p "$WORK/overlay"
cat >"$WORK/overlay/probe-init" <<EOS
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in \$(cat /lib/modules/order); do insmod "/lib/modules/\$m.ko" 2>/dev/null; done
for p in /sys/class/virtio-ports/*; do [ "\$(cat \$p/name)" = probe ] && PORT=/dev/\${p##*/}; done
echo "probe: port \$PORT"
# The port stays open for the whole probe: closing it drops what the guest has not read yet.
exec 3<>\$PORT
cs() { read up _ </proc/uptime; echo \${up%.*}\${up#*.}; }
rate() { t=\$(( \$(cs) - \$1 )); echo "probe: \$2 $MIB MiB in \$((t / 100)).\$((t % 100 / 10)) s = \$(($MIB * 1048576 / (t * 1000) / 10)).\$(($MIB * 1048576 / (t * 1000) % 10)) MB/s"; }
for bs in $SIZES; do
  t0=\$(cs); dd of=/dev/null bs=\$bs count=$((MIB * 1048576)) iflag=count_bytes,fullblock <&3 2>/dev/null
  rate \$t0 "host->guest bs=\$bs"
done
for bs in $SIZES; do
  t0=\$(cs); dd if=/dev/zero bs=\$bs count=\$(($MIB * 1048576 / bs)) >&3 2>/dev/null
  rate \$t0 "guest->host bs=\$bs"
done
# The same port from node, as the agent's GuestPort uses it (FileHandle: a libuv pool thread per
# call, a fresh 256 KiB buffer per read) and as a blocking loop on the main thread would.
node /node-port.js \$PORT $MIB <&3 >&3 2>/dev/console
# ivshmem-plain (1af4:1110): its BAR 2 is the host's shared file, mapped by the copy loop below.
for d in /sys/bus/pci/devices/*; do
  [ "\$(cat \$d/vendor):\$(cat \$d/device)" = 0x1af4:0x1110 ] || continue
  echo 1 >\$d/enable
  /ivshmem-copy \$d/resource2 $MIB
done
echo "probe: done"
poweroff -f
EOS
chmod +x "$WORK/overlay/probe-init"
# A memcpy loop through the mapped BAR, each way (static: the image has no C library of its own).
cat >"$WORK/ivshmem-copy.c" <<'EOS'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  size_t mib = strtoul(argv[2], 0, 10), size = mib << 20, chunk = 1 << 20;
  int fd = open(argv[1], O_RDWR | O_SYNC);
  char *bar = fd < 0 ? MAP_FAILED : mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (bar == MAP_FAILED) { perror(argv[1]); return 1; }
  char *buf = malloc(chunk);
  memset(buf, 0x5a, chunk);
  double t = now();
  for (size_t off = 0; off < size; off += chunk) memcpy(bar + off, buf, chunk);
  printf("probe: ivshmem guest write (memcpy into the BAR) %zu MiB: %.1f MB/s\n", mib, size / 1e6 / (now() - t));
  t = now();
  for (size_t off = 0; off < size; off += chunk) memcpy(buf, bar + off, chunk);
  printf("probe: ivshmem guest read (memcpy out of the BAR) %zu MiB: %.1f MB/s\n", mib, size / 1e6 / (now() - t));
  memcpy(bar, "ODYSSEY-IVSHMEM", 15);
  return 0;
}
EOS
cat >"$WORK/overlay/node-port.js" <<'EOS'
const fs = require('node:fs');
const size = Number(process.argv[3]) * 1048576;
const cs = () => Number(process.hrtime.bigint()) / 1e9;
const say = (what, t0) => console.error(`probe: node ${what} ${process.argv[3]} MiB: ${(size / 1e6 / (cs() - t0)).toFixed(1)} MB/s`);
(async () => {
  // fd 0 and 1 are the port (opened once by the shell: closing it drops unread bytes).
  let t0 = cs();
  for (let got = 0; got < size; ) got += fs.readSync(0, Buffer.allocUnsafe(Math.min(262144, size - got)));
  say('host->guest readSync, fresh 256 KiB buffers', t0);
  t0 = cs();
  for (let got = 0; got < size; ) {
    const r = await new Promise((res, rej) => fs.read(0, Buffer.allocUnsafe(262144), 0, Math.min(262144, size - got), null, (e, n) => (e ? rej(e) : res(n))));
    got += r;
  }
  say('host->guest fs.read (pool thread), fresh 256 KiB buffers', t0);
  // One slab filled read by read (a read of the port returns one 4 KiB virtqueue buffer at most).
  let slab = Buffer.allocUnsafe(1048576);
  let at = 0;
  const room = () => {
    if (slab.length - at < 65536) [slab, at] = [Buffer.allocUnsafe(1048576), 0];
    return slab.length - at;
  };
  t0 = cs();
  for (let got = 0; got < size; ) {
    const want = Math.min(room(), size - got);
    const n = fs.readSync(0, slab, at, want);
    at += n;
    got += n;
  }
  say('host->guest readSync into 1 MiB slabs', t0);
  t0 = cs();
  for (let got = 0; got < size; ) {
    const want = Math.min(room(), size - got);
    const n = await new Promise((res, rej) => fs.read(0, slab, at, want, null, (e, n) => (e ? rej(e) : res(n))));
    at += n;
    got += n;
  }
  say('host->guest fs.read (pool thread) into 1 MiB slabs', t0);
  t0 = cs();
  const cat = require('node:child_process').spawn('cat', [], { stdio: [0, 'pipe', 'inherit'] });
  await new Promise((res) => {
    let got = 0;
    cat.stdout.on('data', (c) => {
      got += c.length;
      if (got >= size) res();
    });
  });
  say('host->guest through cat and a pipe', t0);
  cat.kill();
  const block = Buffer.alloc(65536, 0x5a);
  t0 = cs();
  for (let put = 0; put < size; put += block.length) fs.writeSync(1, block);
  say('guest->host writeSync 64 KiB', t0);
  t0 = cs();
  for (let put = 0; put < size; put += block.length)
    await new Promise((res, rej) => fs.write(1, block, (e) => (e ? rej(e) : res())));
  say('guest->host fs.write (pool thread) 64 KiB', t0);
})();
EOS
gcc -O2 -static -o "$WORK/overlay/ivshmem-copy" "$WORK/ivshmem-copy.c"
(cd "$WORK/overlay" && printf 'probe-init\nivshmem-copy\nnode-port.js\n' | cpio -o -H newc --quiet) >"$WORK/overlay.cpio"
cat "$WORK/overlay.cpio" "$initramfs" >"$WORK/initramfs"

SHM="/dev/shm/odyssey-kvm-port-$$"
truncate -s "$((MIB > 64 ? MIB : 64))M" "$SHM"
qemu-system-x86_64 -m 512 -display none -monitor none -no-reboot -serial "file:$WORK/console" \
  -kernel "$kernel" -initrd "$WORK/initramfs" -append "console=ttyS0 quiet panic=-1 rdinit=/probe-init" \
  -object "memory-backend-file,id=shm,share=on,mem-path=$SHM,size=$((MIB > 64 ? MIB : 64))M" \
  -device ivshmem-plain,memdev=shm \
  -device virtio-serial-pci -chardev "socket,id=ch0,path=$WORK/sock,server=on,wait=off" \
  -device virtserialport,chardev=ch0,name=probe &
QEMU_PID=$!

# The host end: sends the three host→guest runs at once (the port holds them back until the guest
# reads), then times each guest→host run from its first byte to its last.
node - "$WORK/sock" "$MIB" 8 5 <<'EOS' &
const net = require('node:net');
const [sock, mib, sent, runs] = process.argv.slice(2);
const size = Number(mib) * 1048576;
const connect = () => {
  const s = net.connect(sock);
  s.on('error', () => setTimeout(connect, 100));
  s.on('connect', () => start(s));
};
function start(s) {
  const block = Buffer.alloc(1048576, 0x5a);
  let left = size * Number(sent);
  const more = () => {
    while (left > 0) {
      left -= block.length;
      if (!s.write(block)) return void s.once('drain', more);
    }
  };
  more();
  let got = 0;
  let t0 = 0n;
  let run = 0;
  s.on('data', (chunk) => {
    if (got % size === 0 && chunk.length > 0 && t0 === 0n) t0 = process.hrtime.bigint();
    got += chunk.length;
    while (got >= (run + 1) * size) {
      const t = process.hrtime.bigint();
      const s_ = Number(t - t0) / 1e9;
      console.log(`host: guest->host run ${run + 1}: ${mib} MiB in ${s_.toFixed(2)} s = ${(size / 1e6 / s_).toFixed(1)} MB/s`);
      run += 1;
      t0 = got > run * size ? t : 0n;
      if (run === Number(runs)) return void s.destroy();
    }
  });
}
connect();
EOS
HOST_PID=$!
wait "$QEMU_PID" || true
QEMU_PID=""
sleep 1
kill "$HOST_PID" 2>/dev/null || true
grep -E '^probe:|dd:' "$WORK/console"
echo "host: shared file starts with: $(head -c 15 "$SHM")"
