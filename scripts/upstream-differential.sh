#!/usr/bin/env bash
# Differential test against upstream qubesd: serves upstream's real QubesAdminAPI handler
# (qubes-core-admin, unmodified, from a local checkout) and odysseyd on two sockets with the same
# set-up, replays a seeded stream of generated Admin API requests to both in lock step, and reports
# the replies that differ, grouped by method family and mismatch class, one example per class.
#
# Usage:
#   UPSTREAM_CORE_ADMIN=/path/to/qubes-core-admin UPSTREAM_CORE_QREXEC=/path/to/qubes-core-qrexec \
#     scripts/upstream-differential.sh
#
# Environment:
#   UPSTREAM_CORE_ADMIN   checkout of qubes-core-admin (directory holding qubes/ and setup.py), and
#   UPSTREAM_CORE_QREXEC  checkout of qubes-core-qrexec (directory holding the qrexec/ package).
#                         Either unset: the check is skipped (exit 0). Never copied into this repo.
#   DIFF_SEED             generator seed (default 1); the same seed sends the same requests.
#   DIFF_COUNT            number of generated requests (default 3000).
#   DIFF_JSON             also write the report as JSON to this file.
#   DIFF_LOG              write every request and both normalised replies to this file (JSON lines).
#   PYTHON                interpreter with Debian's python3-lxml python3-libvirt python3-jinja2
#                         python3-yaml python3-docutils python3-pyinotify (default /usr/bin/python3).
#   UPSTREAM_CHECK_KEEP=1 keep the temp dir (both daemons' logs and state).
#
# Exit status: 0 when every difference is a deviation documented in the README, 1 when others
# remain, 2 when the set-up failed.
#
# The generator and comparer (scripts/differential/*.py) are Python, standard library only: the
# upstream side must run under Debian's python3 anyway, the harness then needs no build step and
# stays out of the TypeScript project (npm test, tsc, eslint never see it), and it reaches
# odysseyd only over its socket, like any client.
set -uo pipefail

UPSTREAM_CHECK_NAME=upstream-differential
if [[ -z "${UPSTREAM_CORE_ADMIN:-}" || -z "${UPSTREAM_CORE_QREXEC:-}" ]]; then
  echo "$UPSTREAM_CHECK_NAME: SKIP (UPSTREAM_CORE_ADMIN and UPSTREAM_CORE_QREXEC are not both set)"
  exit 0
fi
# The temp dir, daemon start and clean-up shared with the other upstream checks.
source "$(dirname "${BASH_SOURCE[0]}")/lib/upstream-client.sh" || exit 2
HERE="$ROOT/scripts/differential"
PYTHON=${PYTHON:-/usr/bin/python3}
# No __pycache__ in the checkout (ours) nor in the upstream sources.
export PYTHONDONTWRITEBYTECODE=1
[[ -f "$UPSTREAM_CORE_ADMIN/qubes/api/admin.py" ]] ||
  upstream_client_fail "UPSTREAM_CORE_ADMIN=$UPSTREAM_CORE_ADMIN has no qubes/api/admin.py"
[[ -d "$UPSTREAM_CORE_QREXEC/qrexec" ]] ||
  upstream_client_fail "UPSTREAM_CORE_QREXEC=$UPSTREAM_CORE_QREXEC has no qrexec/ package"
missing=""
for module in lxml libvirt jinja2 yaml docutils pyinotify; do
  "$PYTHON" -c "import $module" 2>/dev/null || missing+=" $module"
done
[[ -z "$missing" ]] || upstream_client_fail "$PYTHON lacks:$missing (apt-get install python3-lxml python3-libvirt python3-jinja2 python3-yaml python3-docutils python3-pyinotify)"

upstream_client_prepare
UP_BASE="$WORK/upstream"
UP_SOCK="$WORK/upstream.sock"
UP_PID=""
stop_upstream() {
  if [[ -n "$UP_PID" ]]; then
    kill "$UP_PID" 2>/dev/null
    wait "$UP_PID" 2>/dev/null
  fi
  upstream_client_cleanup
}
trap stop_upstream EXIT

# Both daemons find the same installed kernel, 6.6.1 (SETUP makes it the default).
mkdir -p "$UP_BASE/vm-kernels/6.6.1" "$WORK/py" "$WORK/bin"
touch "$UP_BASE/vm-kernels/6.6.1/vmlinuz"
"$PYTHON" "$HERE/dist_info.py" "$UPSTREAM_CORE_ADMIN" "$WORK/py" ||
  upstream_client_fail "could not read the entry points of $UPSTREAM_CORE_ADMIN/setup.py"
# admin.pool.ListDrivers imports upstream's LVM driver, which runs `sudo lvm lvs` at import: an
# lvm that reports no volume (its JSON report form), and a sudo that just runs the command.
printf '#!/bin/sh\necho '"'"'{"report":[{"lv":[]}]}'"'"'\n' >"$WORK/bin/lvm"
printf '#!/bin/sh\nexec "$@"\n' >"$WORK/bin/sudo"
chmod +x "$WORK/bin/lvm" "$WORK/bin/sudo"

(cd "$WORK" && PATH="$WORK/bin:$PATH" PYTHONPATH="$WORK/py:$UPSTREAM_CORE_ADMIN:$UPSTREAM_CORE_QREXEC:$HERE/stubs" \
  exec "$PYTHON" "$HERE/upstream_server.py" "$UP_BASE" "$UP_SOCK" --methods-json "$WORK/upstream-methods.json") \
  >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 200); do
  [[ -S "$UP_SOCK" ]] && break
  kill -0 "$UP_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -S "$UP_SOCK" ]] || upstream_client_fail "upstream's handler did not create $UP_SOCK" "$WORK/upstream.log"

upstream_client_start_odysseyd || upstream_client_fail "odysseyd did not create $SOCK" "$WORK/daemon.log"
(cd "$ROOT" && node --input-type=module -e "
  const { METHODS } = await import('./core/dist/api/method-table.js');
  console.log(JSON.stringify(METHODS.map((m) => m.name)));
") >"$WORK/our-methods.json" || upstream_client_fail "could not list odysseyd's methods"

args=(--upstream "$UP_SOCK" --upstream-base "$UP_BASE" --ours "$SOCK" --ours-base "$STATE"
  --upstream-methods "$WORK/upstream-methods.json" --our-methods "$WORK/our-methods.json"
  --seed "${DIFF_SEED:-1}" --count "${DIFF_COUNT:-3000}")
[[ -n "${DIFF_JSON:-}" ]] && args+=(--json "$DIFF_JSON")
[[ -n "${DIFF_LOG:-}" ]] && args+=(--log "$DIFF_LOG")
"$PYTHON" "$HERE/differential.py" "${args[@]}"
