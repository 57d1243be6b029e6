#!/bin/sh
# /init of the nested Xen dom0 (built by scripts/xen-nested/build-dom0.sh): does what Debian's
# xencommons + libvirtd units would, mounts the host's 9p shares, runs the job's command and
# prints its exit status for scripts/xen-nested/run.sh, then powers the machine off.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/xen-4.17/bin HOME=/root
mark() { echo "ODYSSEY-NESTED: $* $(cut -d' ' -f1 /proc/uptime)"; }
finish() {
  echo "ODYSSEY-NESTED-EXIT=$1"
  sync
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The conformance state dir (qubes' disks) lives here: most of dom0's memory, not tmpfs's default half.
mount -t tmpfs -o mode=1777,size=75% tmp /tmp
mount -t tmpfs run /run
# xenconsoled needs ptys for the guests' consoles.
mkdir -p /dev/pts /dev/shm /run/xen /run/xen-hotplug /run/libvirt
mount -t devpts devpts /dev/pts
# What udev would add: the block hotplug script's lock compares `stat /dev/stdin` with its lock file
# and spins forever without these links.
ln -s /proc/self/fd /dev/fd
for n in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${n%%:*}" "/dev/${n#*:}"; done
mount -t tmpfs shm /dev/shm
ip link set lo up
hostname dom0
mark dom0-shell

# Modules in dependency order (Xen devices, blkback + loop for file-backed PV disks, virtio 9p).
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" || echo "odyssey dom0: insmod $m failed"; done
mount -t xenfs xenfs /proc/xen

xenstored --pid-file /run/xenstored.pid
i=0
until xenstore-read /local >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "odyssey dom0: xenstored did not start"; finish 125; }
  sleep 0.1
done
xen-init-dom0 >/dev/null
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
mark xenstored-ready

# Shares: "TAG MOUNTPOINT ro|rw|logs" lines; the job share (/job) holds this list and the command.
# A logs share is read-write and gets dom0's /var/log once the command is done.
mkdir -p /job
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro job /job || {
  echo "odyssey dom0: no job share"
  finish 125
}
while read -r tag dir mode; do
  mkdir -p "$dir"
  # The read-only shares do not change during a run, so dom0 may cache them.
  if [ "$mode" = ro ]; then opts=ro,cache=loose; else opts=rw; fi
  [ "$mode" != logs ] || LOGS="$dir"
  mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$opts" "$tag" "$dir" \
    || echo "odyssey dom0: mounting share $tag on $dir failed"
done </job/shares
mark shares-mounted

virtlogd -d
libvirtd -d
i=0
until virsh -c xen:///system version >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 300 ] || { echo "odyssey dom0: libvirtd did not answer"; finish 125; }
  sleep 0.1
done
mark libvirtd-ready

echo "ODYSSEY-NESTED-COMMAND-BEGIN"
sh /job/command.sh </dev/null
code=$?
echo "ODYSSEY-NESTED-COMMAND-END"
mark command-done
[ -z "${LOGS:-}" ] || cp -a /var/log/. "$LOGS/"
virsh -c xen:///system list --name 2>/dev/null | while read -r d; do
  [ -n "$d" ] && virsh -c xen:///system destroy "$d" >/dev/null 2>&1
done
for d in $(awk '$3 == "9p" { print $2 }' /proc/mounts); do umount "$d" 2>/dev/null; done
finish $code
