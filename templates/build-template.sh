#!/usr/bin/env bash
# Builds a template's disks from Debian's packages (upstream: qubes-linux-template-builder):
# a root filesystem image with systemd, Debian's nodejs, the Odyssey qrexec agent as a systemd
# service, the qrexec services in templates/NAME/rootfs and a `user` account; and the guest
# kernel and initramfs Debian installed inside, for the linux-kernel pool.
#
#   build-template.sh [--cache-dir DIR] [--agent-root DIR] [--mirror URL] [--force] NAME
#
#   NAME                 debian-12 (the only template so far)
#   --cache-dir DIR      where builds and downloaded .debs are kept
#                        (default $ODYSSEY_TEMPLATE_CACHE or /var/cache/odyssey/templates)
#   --agent-root DIR     the tree holding the agent's bundles (agent/dist/bundle) and
#                        node_modules/koffi (default: this script's ../, a checkout after
#                        `npm run build` or /usr/lib/odyssey)
#   --mirror URL         Debian mirror (default $ODYSSEY_DEBIAN_MIRROR or http://deb.debian.org/debian)
#   --force              rebuild even when the cache holds a build of the same inputs
#   --cached-only        build nothing: print the cached build of the same inputs, or fail
#
# A build is kept under a key of its inputs (this script, the template's files, the agent's bundles,
# the package list, the mirror); a second run with the same inputs only prints the cached paths.
# Prints `key=`, `root=` (raw ext4 image), `vmlinuz=`, `initramfs=`, `kernel_version=` last.
# Progress goes to stderr when it is a terminal; otherwise only errors are printed.
# Needs root, mmdebstrap and e2fsprogs (mkfs.ext4 -d: no loop mount).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${ODYSSEY_TEMPLATE_CACHE:-/var/cache/odyssey/templates}"
AGENT_ROOT="$(cd "$HERE/.." && pwd)"
MIRROR="${ODYSSEY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE=0
CACHED_ONLY=0
NAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-dir) CACHE="$2"; shift 2 ;;
    --agent-root) AGENT_ROOT="$2"; shift 2 ;;
    --mirror) MIRROR="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --cached-only) CACHED_ONLY=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    -*) echo "build-template: unknown option $1" >&2; exit 2 ;;
    *) NAME="$1"; shift ;;
  esac
done

die() { echo "build-template: $*" >&2; exit 1; }
if [ -t 2 ]; then
  TTY=1
  progress() { echo "build-template: $*" >&2; }
else
  TTY=0
  progress() { :; }
fi

case "$NAME" in
  debian-12) SUITE=bookworm ;;
  "") die "no template name given (debian-12)" ;;
  *) die "unknown template $NAME (known: debian-12)" ;;
esac
OVERLAY="$HERE/$NAME/rootfs"
[ -d "$OVERLAY" ] || die "no $OVERLAY"
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap builds the tree as root, mkfs.ext4 keeps its owners)"

# The guest runs the agent's programs on Debian's nodejs, each bundled into one file
# (scripts/bundle-guest.mjs, part of `npm run build`): the names the template's units and commands run.
BUNDLES="$AGENT_ROOT/agent/dist/bundle"
GUEST_PROGRAMS=(kvm-guest-main xen-guest-main agent-main net-daemon-main qubesdb-cmd-main
  features-request-main client-vm-main)
for main in "${GUEST_PROGRAMS[@]}"; do
  [ -f "$BUNDLES/$main.mjs" ] || die "$BUNDLES/$main.mjs is missing: run npm run build in $AGENT_ROOT"
done
# The Xen vchan transport loads libxenvchan through koffi, whose native module is its own package.
KOFFI="$AGENT_ROOT/node_modules/koffi"
KOFFI_NATIVE="$AGENT_ROOT/node_modules/@koromix/koffi-linux-x64"
[ -f "$KOFFI/package.json" ] && [ -f "$KOFFI_NATIVE/package.json" ] || die "no $KOFFI or $KOFFI_NATIVE: run npm ci in $AGENT_ROOT"

# Debian's packages: systemd as init (dbus for logind, which powers off on the ACPI button the
# KVM backend presses), nodejs for the agent, the cloud kernel with initramfs-tools, e2fsprogs and
# util-linux for the private volume and swap; iproute2, nftables, conntrack and the ISC DHCP client (its script
# writes resolv.conf) for odyssey-network; libxenvchan (libxenmisc4.17, with libxenstore) for the
# agent in a Xen domU. No Recommends (mmdebstrap's default).
PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,nodejs,linux-image-cloud-amd64,initramfs-tools,e2fsprogs,procps,sudo,ca-certificates,less,iproute2,nftables,conntrack,isc-dhcp-client,libxenmisc4.17

# Contents and relative paths only: a checkout and the installed package with the same files share builds.
inputs_hash() {
  {
    printf '%s\n' "$NAME" "$SUITE" "$MIRROR" "$PACKAGES"
    sha256sum <"${BASH_SOURCE[0]}"
    (cd "$OVERLAY" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$BUNDLES" && for main in "${GUEST_PROGRAMS[@]}"; do sha256sum "$main.mjs"; done)
    cat "$KOFFI/package.json" "$KOFFI_NATIVE/package.json" | sha256sum
  } | sha256sum | cut -c1-16
}
KEY="$(inputs_hash)"
OUT="$CACHE/$NAME/$KEY"

if [ "$CACHED_ONLY" = 1 ] && [ ! -s "$OUT/root.img" ]; then
  die "no cached build of $NAME for these inputs (key $KEY) in $CACHE"
fi
if [ "$FORCE" = 1 ] || [ ! -s "$OUT/root.img" ]; then
  # Only a build needs them: a nested Xen dom0 installs the cached build without either.
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
  command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found: apt-get install e2fsprogs"
  mkdir -p "$CACHE/$NAME" "$CACHE/debs"
  WORK="$(mktemp -d "$CACHE/$NAME/.build.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  # A build stopped by a signal leaves no half-made tree in the cache either.
  trap 'exit 130' INT TERM HUP
  TREE="$WORK/tree"
  progress "building $NAME ($SUITE from $MIRROR, key $KEY)"
  # mmdebstrap draws its own progress bars on a terminal.
  QUIET=()
  [ "$TTY" = 1 ] || QUIET=(--quiet)
  # Downloaded .debs are kept across builds: a rebuild after an agent change downloads nothing new.
  mmdebstrap "${QUIET[@]}" --mode=root --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --aptopt='Acquire::http::Timeout "30"' --aptopt='Acquire::Retries "2"' \
    --skip=download/empty \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="find '$CACHE/debs' -maxdepth 1 -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
    --customize-hook="find \"\$1/var/cache/apt/archives\" -maxdepth 1 -name '*.deb' -exec cp -nt '$CACHE/debs/' {} +" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    "$SUITE" "$TREE" "$MIRROR"

  progress "installing the agent and the template's files"
  mkdir -p "$TREE/opt/odyssey"
  for main in "${GUEST_PROGRAMS[@]}"; do cp "$BUNDLES/$main.mjs" "$TREE/opt/odyssey/"; done
  mkdir -p "$TREE/opt/odyssey/node_modules/@koromix"
  cp -a "$KOFFI" "$TREE/opt/odyssey/node_modules/koffi"
  cp -a "$KOFFI_NATIVE" "$TREE/opt/odyssey/node_modules/@koromix/koffi-linux-x64"
  cp -a "$OVERLAY/." "$TREE/"
  # upstream's QubesDB commands, each the agent's one program told its command (it talks to the
  # agent's QubesDB daemon at /run/qubes/qubesdb.sock).
  for cmd in read write rm multiread list watch; do
    printf '#!/bin/sh\nexec node /opt/odyssey/qubesdb-cmd-main.mjs -c %s "$@"\n' \
      "$cmd" >"$TREE/usr/bin/qubesdb-$cmd"
    chmod 0755 "$TREE/usr/bin/qubesdb-$cmd"
  done
  chmod 0440 "$TREE/etc/sudoers.d/qubes"
  chmod 0755 "$TREE"/etc/qubes-rpc/* "$TREE/usr/lib/odyssey/mount-private" \
    "$TREE/usr/lib/odyssey/post-install" "$TREE"/etc/qubes/post-install.d/*.sh "$TREE/usr/bin/qrexec-client-vm" \
    "$TREE/usr/bin/qvm-features-request" "$TREE/usr/sbin/odyssey-lxc-init" \
    "$TREE/usr/lib/systemd/system-generators/odyssey-xen-generator"
  chroot "$TREE" useradd --create-home --shell /bin/bash --uid 1000 --user-group user
  chroot "$TREE" systemctl enable --quiet odyssey-qrexec-agent.service odyssey-mount-private.service \
    odyssey-swap.service odyssey-network.service odyssey-post-install.service
  # Timers that would only slow a qube's boot and its disposable copies.
  chroot "$TREE" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer
  # A nested Xen domU under TCG spends 0.3-0.55 s idle on each generator or module load (a bare
  # exec is 70-90 ms; templates/README):
  # no generator for what a qube never has (encrypted, integrity or verity volumes, GPT
  # auto-discovery, hibernation, offline updates), and no early module loads for hardware and file
  # systems it does not use (a /dev node still loads its module on first open; the configfs and
  # fusectl mounts are then skipped by their own ConditionPathExists, and FUSE itself works).
  mkdir -p "$TREE/etc/systemd/system-generators"
  for gen in cryptsetup integritysetup veritysetup gpt-auto hibernate-resume system-update; do
    ln -s /dev/null "$TREE/etc/systemd/system-generators/systemd-$gen-generator"
  done
  chroot "$TREE" systemctl mask --quiet modprobe@configfs.service modprobe@dm_mod.service \
    modprobe@drm.service modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service
  mkdir -p "$TREE/rw"
  echo "$NAME" >"$TREE/etc/hostname"
  # Empty: systemd makes a machine id at each boot, so qubes of one template do not share one.
  : >"$TREE/etc/machine-id"
  rm -f "$TREE/var/lib/dbus/machine-id"

  progress "taking out the kernel and initramfs"
  VMLINUZ="$(ls "$TREE"/boot/vmlinuz-* | sort -V | tail -1)"
  KV="${VMLINUZ##*/vmlinuz-}"
  [ -s "$TREE/boot/initrd.img-$KV" ] || die "no initramfs for $KV in the tree"
  mkdir -p "$WORK/out"
  cp "$VMLINUZ" "$WORK/out/vmlinuz"
  cp "$TREE/boot/initrd.img-$KV" "$WORK/out/initramfs"
  echo "$KV" >"$WORK/out/kernel_version"
  # The services the template has, which it announces as upstream's agent does after its install
  # (qubes.PostInstall: supported-rpc.SERVICE for each executable in /etc/qubes-rpc).
  # The agent answers qubes.WaitForRunningSystem itself (agent/src/builtin-services.ts).
  { (cd "$TREE/etc/qubes-rpc" && for srv in *; do if [ -f "$srv" ] && [ -x "$srv" ]; then echo "${srv%%+*}"; fi; done)
    echo qubes.WaitForRunningSystem; } |
    LC_ALL=C sort -u | paste -sd, >"$WORK/out/rpc_services"

  # The root image: its tree plus room to update packages, at least 2 GiB; made without a loop mount.
  used_mib=$(du -sm "$TREE" | cut -f1)
  size_mib=$(( (used_mib * 2 + 1023) / 1024 * 1024 ))
  [ "$size_mib" -ge 2048 ] || size_mib=2048
  progress "making the ${size_mib} MiB root image from ${used_mib} MiB of files"
  # mkfs.ext4 -d names every file it copies on stderr, -q or not: shown only when it fails.
  mkfs.ext4 -q -F -L root -m 0 -d "$TREE" "$WORK/out/root.img" "${size_mib}M" >"$WORK/mkfs.log" 2>&1 ||
    { cat "$WORK/mkfs.log" >&2; die "mkfs.ext4 failed"; }
  chmod -R a+rX "$WORK/out"
  rm -rf "$OUT"
  mv "$WORK/out" "$OUT"
  # Builds of older inputs are never used again: only the newest stays (a root image is ~1 GiB on disk).
  find "$CACHE/$NAME" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" ! -name '.build.*' -exec rm -rf {} +
else
  progress "cached build $OUT is up to date"
fi

echo "key=$KEY"
echo "root=$OUT/root.img"
echo "vmlinuz=$OUT/vmlinuz"
echo "rpc_services=$(cat "$OUT/rpc_services")"
echo "initramfs=$OUT/initramfs"
echo "kernel_version=$(cat "$OUT/kernel_version")"
