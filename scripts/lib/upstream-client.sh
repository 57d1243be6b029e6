# shellcheck shell=bash
# Shared set-up of the scripts that run the REAL upstream Qubes client (qubes-core-admin-client,
# unmodified) against odysseyd: scripts/upstream-tools-check.sh and scripts/upstream-backup-check.sh.
# Sourced, not run. Sourcing only defines ROOT and the functions below; each function is called by
# the script, in this order, so that a script can put its own checks and files in between.
#
#   upstream_client_init NAME   NAME (the script's name) prefixes every message. Exits 0 with
#                               "NAME: SKIP" when UPSTREAM_CLIENT is unset, 2 when it holds no
#                               qubesadmin/. Sets PYTHON (default /usr/bin/python3).
#   upstream_client_prepare     Sets MAIN_JS (core/dist/daemon/main.js, built with tsc if missing;
#                               exit 2 if it cannot be), WORK (a fresh /tmp/NAME.XXXXXX), SOCK,
#                               STATE and PYDIR under it, DAEMON_PID="", and an EXIT trap that
#                               stops the daemon and removes WORK (kept, and said so, when
#                               UPSTREAM_CHECK_KEEP=1). The exit status is the script's own.
#   upstream_client_aim [PY...] Writes PYDIR/sitecustomize.py and a qubesadmin dist-info, and
#                               exports PYTHONPATH and ODYSSEY_QUBESD_SOCKET: every interpreter
#                               started after this talks to $SOCK. Each PY argument is one more
#                               Python line run in sitecustomize after the redirection.
#   upstream_client_start_odysseyd [ARG...]
#                               Starts odysseyd (hypervisor unreachable) on $SOCK with
#                               state in $STATE, ARGs added after --state-dir; log in
#                               $WORK/daemon.log. Returns 1 if the socket did not appear within
#                               10 s, so that the script says so in its own words.
#   upstream_client_fail MSG [FILE]
#                               "NAME: MSG" and then FILE (e.g. the daemon log) on stderr; exit 2.
#   upstream_client_tool TOOL [ARG...]
#                               Runs one upstream tool (qvm-ls, qubes-prefs, ...) as
#                               `$PYTHON -m qubesadmin.tools.<tool>`: no console scripts needed.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

upstream_client_init() {
  UPSTREAM_CHECK_NAME=$1
  if [[ -z "${UPSTREAM_CLIENT:-}" ]]; then
    echo "$UPSTREAM_CHECK_NAME: SKIP (UPSTREAM_CLIENT is not set)"
    exit 0
  fi
  if [[ ! -d "$UPSTREAM_CLIENT/qubesadmin" ]]; then
    upstream_client_fail "UPSTREAM_CLIENT=$UPSTREAM_CLIENT has no qubesadmin/ directory"
  fi
  PYTHON=${PYTHON:-/usr/bin/python3}
}

upstream_client_fail() {
  echo "$UPSTREAM_CHECK_NAME: $1" >&2
  [[ -n "${2:-}" ]] && cat "$2" >&2
  exit 2
}

upstream_client_prepare() {
  MAIN_JS="$ROOT/core/dist/daemon/main.js"
  if [[ ! -f "$MAIN_JS" ]]; then
    # tsc -b may report errors in packages under construction and still emit; only the file matters.
    (cd "$ROOT" && npx tsc -b core >/dev/null 2>&1)
    [[ -f "$MAIN_JS" ]] || upstream_client_fail "$MAIN_JS missing; build core first"
  fi

  WORK=$(mktemp -d "/tmp/$UPSTREAM_CHECK_NAME.XXXXXX")
  SOCK="$WORK/qubesd.sock"
  STATE="$WORK/state"
  PYDIR="$WORK/py"
  DAEMON_PID=""
  trap upstream_client_cleanup EXIT
}

upstream_client_cleanup() {
  if [[ -n "$DAEMON_PID" ]]; then
    kill "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
  fi
  if [[ "${UPSTREAM_CHECK_KEEP:-}" == 1 ]]; then
    echo "$UPSTREAM_CHECK_NAME: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}

# Aims the upstream client at our socket without touching the system: qubesadmin has no
# environment variable for the socket and picks QubesRemote (qrexec) when /etc/qubes-release
# is missing; a sitecustomize.py fixes both at interpreter start-up.
upstream_client_aim() {
  local line
  mkdir -p "$PYDIR/qubesadmin-4.4.0.dist-info"
  cat >"$PYDIR/sitecustomize.py" <<'EOF'
import os
_sock = os.environ.get("ODYSSEY_QUBESD_SOCKET")
if _sock:
    import qubesadmin, qubesadmin.app, qubesadmin.config
    qubesadmin.config.QUBESD_SOCKET = _sock
    qubesadmin.Qubes = qubesadmin.app.QubesLocal
EOF
  for line in "$@"; do
    printf '    %s\n' "$line" >>"$PYDIR/sitecustomize.py"
  done
  # Every tool's argument parser reads importlib.metadata.metadata("qubesadmin") for --version.
  cat >"$PYDIR/qubesadmin-4.4.0.dist-info/METADATA" <<'EOF'
Metadata-Version: 2.1
Name: qubesadmin
Version: 4.4.0
Summary: placeholder metadata so the unmodified upstream tools start
Author-email: nobody@example.invalid
License: LGPL-2.1-or-later
EOF
  export PYTHONPATH="$PYDIR:$UPSTREAM_CLIENT"
  export ODYSSEY_QUBESD_SOCKET="$SOCK"
}

upstream_client_start_odysseyd() {
  # A kernel directory so that default_kernel / kernel validation ("Kernel 'x' not installed") passes.
  mkdir -p "$STATE/vm-kernels/6.6.1"
  touch "$STATE/vm-kernels/6.6.1/vmlinuz"
  # Deliberately a hypervisor that cannot be reached (a libvirt socket nobody serves; a backend
  # package that does not exist stops the daemon): configuration calls must work without a
  # hypervisor, and lifecycle calls must then fail with a clean QubesException rather than a
  # traceback. A reachable hypervisor would make results depend on the host.
  node "$MAIN_JS" --socket "$SOCK" --state-dir "$STATE" "$@" --backend kvm \
    --libvirt-uri "qemu:///system?socket=$WORK/no-libvirtd.sock" --log-level debug \
    >"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 100); do
    [[ -S "$SOCK" ]] && break
    # The daemon died: no socket is coming.
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -S "$SOCK" ]]
}

upstream_client_tool() { "$PYTHON" -m "qubesadmin.tools.${1//-/_}" "${@:2}"; }
