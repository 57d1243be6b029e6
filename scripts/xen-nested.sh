#!/usr/bin/env bash
# Runs a command inside a nested Xen 4.17 dom0 (Xen under QEMU/TCG, dom0 from
# scripts/xen-nested/build-dom0.sh) with xenstored, xenconsoled and libvirtd (xen:///system) up,
# and returns the command's exit status.
#
#   xen-nested.sh [options] -- COMMAND [ARG...]
#
#   --share DIR        make host DIR visible read-only at the same path in dom0 (repeatable);
#                      the repository is always shared, and COMMAND starts in its root
#   --share-rw DIR     the same, read-write: how results come back to the host (repeatable)
#   --dom0-logs DIR    copy dom0's /var/log (libvirt's libxl logs, guest consoles, hotplug) into DIR
#   --env NAME=VALUE   set in COMMAND's environment (repeatable)
#   --memory MIB       QEMU's memory (default 4096); what dom0 does not get is left for domUs
#   --dom0-memory MIB  dom0's memory (default 1536)
#   --cpus N           virtual CPUs (default 1; TCG gains nothing from more on a busy host)
#   --timeout SECONDS  kill QEMU after this long (default 2700: the whole nested conformance run took 1716 s on 4 December 2026)
#   --log FILE         where the serial console goes (default: a new file under /tmp)
#   --cache-dir DIR    dom0 image cache (build-dom0.sh --cache-dir)
#
# On a terminal (and with CI unset) boot progress and COMMAND's output are shown as they come;
# otherwise only the summary. Prints `exit=`, `log=` and timings (`*_s=`, seconds since QEMU
# started) on stdout last. Exits with COMMAND's status, or 125 when dom0 never ran it.
# Needs root (9p passthrough shares) and qemu-system-x86 besides what build-dom0.sh needs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARES=("$ROOT ro")
ENVS=()
MEMORY=4096
DOM0_MEMORY=1536
CPUS=1
TIMEOUT=2700
LOG=""
BUILD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --share) SHARES+=("$(cd "$2" && pwd) ro"); shift 2 ;;
    --share-rw) mkdir -p "$2"; SHARES+=("$(cd "$2" && pwd) rw"); shift 2 ;;
    --dom0-logs) mkdir -p "$2"; SHARES+=("$(cd "$2" && pwd) logs"); shift 2 ;;
    --env) ENVS+=("$2"); shift 2 ;;
    --memory) MEMORY="$2"; shift 2 ;;
    --dom0-memory) DOM0_MEMORY="$2"; shift 2 ;;
    --cpus) CPUS="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --log) LOG="$2"; shift 2 ;;
    --cache-dir) BUILD_ARGS+=(--cache-dir "$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [options] -- COMMAND [ARG...]" >&2; exit 2; }

LIVE=0
[ -t 2 ] && [ -z "${CI:-}" ] && LIVE=1
say() { echo "xen-nested: $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

started=$EPOCHREALTIME
built="$(bash "$HERE/xen-nested/build-dom0.sh" "${BUILD_ARGS[@]}")"
declare -A IMAGE
while IFS='=' read -r k v; do IMAGE[$k]="$v"; done <<<"$built"
build_s=$(since "$started")

JOB="$(mktemp -d /tmp/odyssey-xen-nested.XXXXXX)"
QPID=""
cleanup() {
  [ -z "$QPID" ] || kill "$QPID" 2>/dev/null || true
  rm -rf "$JOB"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "$LOG" ] || LOG="$JOB.log"
: >"$LOG"

# 9p shares: QEMU exports each host dir under a tag, dom0's /init mounts the tags listed in
# /job/shares at the host's paths, so absolute paths mean the same thing on both sides.
VIRTFS=(-virtfs "local,path=$JOB,mount_tag=job,security_model=passthrough,readonly=on")
: >"$JOB/shares"
i=0
for s in "${SHARES[@]}"; do
  dir="${s% *}" mode="${s##* }"
  ro=""
  [ "$mode" != ro ] || ro=",readonly=on"
  VIRTFS+=(-virtfs "local,path=$dir,mount_tag=share$i,security_model=passthrough,multidevs=remap$ro")
  echo "share$i $dir $mode" >>"$JOB/shares"
  i=$((i + 1))
done
{
  printf 'cd %q || exit 125\n' "$ROOT"
  for e in "${ENVS[@]}"; do printf 'export %q\n' "$e"; done
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$JOB/command.sh"

# Nehalem: libvirt's libxl driver finds no CPU model for TCG's default AMD CPU (nested-virtualization.md
# §5). Xen's own boot options are Debian's defaults plus a serial console, less what protects
# nothing under TCG, which executes no speculation: XPTI (a page-table switch and TLB flush on every
# PV guest kernel entry, and a TLB flush empties TCG's soft TLB), the other speculation mitigations,
# PV L1TF shadowing; and no boot scrub (QEMU's RAM starts zeroed). -no-reboot turns dom0's poweroff
# (or a crash) into QEMU's exit.
qemu_started=$EPOCHREALTIME
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -machine pc -cpu Nehalem -m "$MEMORY" -smp "$CPUS" \
  -nographic -no-reboot -monitor none -serial stdio \
  -kernel "${IMAGE[xen]}" \
  -append "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=${DOM0_MEMORY}M,max:${DOM0_MEMORY}M console_timestamps=boot xpti=false spec-ctrl=no pv-l1tf=false bootscrub=false" \
  -initrd "${IMAGE[kernel]} console=hvc0 earlyprintk=xen quiet,${IMAGE[initramfs]}" \
  "${VIRTFS[@]}" </dev/null >"$LOG" 2>&1 &
QPID=$!

# Follows the console: marker times (host clock, so boot before dom0's first line counts) go to
# $JOB/times; on a terminal, markers and the command's output are shown as they come.
: >"$JOB/times"
in_command=0
while IFS= read -r line; do
  line="${line//$'\r'/}"
  case "$line" in
    "ODYSSEY-NESTED: "*)
      set -- ${line#ODYSSEY-NESTED: }
      echo "${1//-/_}_s=$(since "$qemu_started")" >>"$JOB/times"
      [ $LIVE = 0 ] || say "$1 (dom0 uptime $2 s)"
      ;;
    ODYSSEY-NESTED-COMMAND-BEGIN) in_command=1 ;;
    ODYSSEY-NESTED-COMMAND-END) in_command=0 ;;
    ODYSSEY-NESTED-EXIT=*) echo "exit=${line#ODYSSEY-NESTED-EXIT=}" >>"$JOB/times" ;;
    *) [ $LIVE = 0 ] || [ $in_command = 0 ] || echo "$line" >&2 ;;
  esac
done < <(tail -n +1 -F --pid="$QPID" "$LOG" 2>/dev/null)
wait "$QPID" && qemu_code=0 || qemu_code=$?
QPID=""
total_s=$(since "$qemu_started")

code=$(sed -n 's/^exit=//p' "$JOB/times")
if [ -z "$code" ]; then
  code=125
  [ "$qemu_code" = 124 ] && say "timed out after $TIMEOUT s" || say "dom0 ended without running the command (qemu exit $qemu_code)"
  tail -n 40 "$LOG" | tr -d '\r' >&2
elif [ "$code" != 0 ] && [ $LIVE = 0 ]; then
  # Without the live view, the command's last words are all a CI log gets.
  sed -n '/^ODYSSEY-NESTED-COMMAND-BEGIN/,/^ODYSSEY-NESTED-COMMAND-END/p' "$LOG" | tr -d '\r' | tail -n 40 >&2
fi
say "command exited $code after $total_s s in QEMU (image $build_s s); console log: $LOG"
grep -v '^exit=' "$JOB/times" || true
echo "build_s=$build_s"
echo "total_s=$total_s"
echo "log=$LOG"
echo "exit=$code"
exit "$code"
