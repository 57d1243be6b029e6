#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 with Node 20, as root: the Debian
# packages (libvirt, QEMU, guest kernel, filesystem tools for the reflink tests) and the npm
# workspaces, then builds, packages (packaging/build-deb.sh) and installs the odyssey package,
# which puts odysseyd, qvm and upstream's qvm-* names on PATH. Safe to run again: apt and npm
# skip what is there, and the package is reinstalled from the fresh build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # real libvirt + QEMU for @odyssey/libvirt and the KVM backend (TCG here)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc libvirt-daemon-system libvirt-clients
  qemu-system-x86 qemu-utils libxml2-utils
  # the lxc backend's uplink for a netvm without netvm: user-mode networking, as QEMU's (backends/lxc)
  slirp4netns
  # a child subreaper for the libvirtd we start (scripts/libvirtd-test.sh, run-odysseyd.sh): a kill
  # returns once QEMU is reaped, which a container's or microVM's PID 1 may do seconds late
  tini
  # libvirt's VirtualBox driver for backends/virtualbox (VirtualBox itself is not in Debian: that
  # backend's conformance run reports "not run" with the reason libvirt gives)
  libvirt-daemon-driver-vbox
  # guest images: a Debian kernel plus a busybox initramfs (scripts/build-guest-image.sh)
  linux-image-cloud-amd64 busybox-static cpio lz4
  # the lvm_thin pool driver (its tests make a thin pool on a loop device where device-mapper exists)
  lvm2 thin-provisioning-tools
  # reflink-capable filesystems for the file-reflink pool tests
  btrfs-progs xfsprogs
  # nested Xen (backends/xen, vchan over libxenvchan): the hypervisor, its tools and libxenvchan,
  # libvirt's libxl driver, and the generic Debian kernel (the cloud one cannot be a Xen dom0)
  xen-hypervisor-4.17-amd64 xen-utils-4.17 libxen-dev libvirt-daemon-driver-xen linux-image-amd64 socat
  # backups: the scrypt tool checks our encrypted files; upstream's restore (scripts/
  # upstream-backup-check.sh) runs it and needs PyYAML and lxml
  scrypt python3-yaml python3-lxml
  # the Debian package (packaging/): dpkg-shlibdeps, man pages, lintian, and the clean Debian 12
  # chroot its install test makes
  dpkg-dev help2man lintian mmdebstrap
  # the guest network daemon's test with packets across network namespaces (agent/test/net-namespaces.test.ts)
  nftables conntrack
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Without udev /dev/kvm stays root-only, which makes libvirt re-probe QEMU on every call.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
  chown root:kvm /dev/kvm && chmod 0660 /dev/kvm
fi

npm ci --no-audit --no-fund --loglevel=error
npm run build

# The commands on PATH come from the package, as an administrator gets them; --reinstall because a
# rebuild keeps the version. Its Depends (Debian's nodejs >= 18.19) are met by the Node 20 here.
deb=$(bash packaging/build-deb.sh)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" >/dev/null
