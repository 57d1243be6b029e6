#!/usr/bin/env bash
# Proves that odysseyd's backups are real Qubes backups (format 4): the UNMODIFIED upstream client
# (qubes-core-admin-client) makes one through odysseyd with qvm-backup (profile written by the tool,
# admin.backup.Info, admin.backup.Execute), checks it with qvm-backup-restore --verify-only (header
# hmac, scrypt decryption and inner tar of every file), then restores it with qvm-backup-restore into
# the same odysseyd after the VM was removed; the restored volume, notes and firewall must equal the
# originals. Every byte of the archive is thus read by upstream's restore code and the `scrypt` and
# `tar` tools it drives.
#
# Usage:
#   UPSTREAM_CLIENT=/path/to/extracted/qubes-core-admin-client scripts/upstream-backup-check.sh
#
# Environment:
#   UPSTREAM_CLIENT       checkout of qubes-core-admin-client (directory holding qubesadmin/).
#                         Unset: the check is skipped (exit 0). It is never copied into this repo.
#   PYTHON                interpreter (default /usr/bin/python3) with PyYAML (qvm-backup) and lxml
#                         (the restore's qubes.xml parser): Debian python3-yaml python3-lxml.
#   UPSTREAM_CHECK_KEEP=1 keep the temp dir (daemon log, state, archive) for inspection.
# Also needs the `scrypt` tool (Debian package scrypt), which upstream's restore runs.
set -uo pipefail

# The set-up shared with upstream-tools-check.sh (temp dir, client aimed at our socket, daemon).
source "$(dirname "${BASH_SOURCE[0]}")/lib/upstream-client.sh" || exit 2
upstream_client_init upstream-backup-check
for tool in scrypt tar gzip; do
  command -v "$tool" >/dev/null || { echo "upstream-backup-check: '$tool' is missing" >&2; exit 2; }
done
"$PYTHON" -c 'import yaml, lxml' 2>/dev/null || {
  echo "upstream-backup-check: $PYTHON lacks yaml or lxml (python3-yaml python3-lxml)" >&2
  exit 2
}

upstream_client_prepare
PROFILES="$WORK/profiles"
OUT="$WORK/out"

# --- The upstream client, aimed at our socket, plus what backup and restore need ---------------
mkdir -p "$PROFILES" "$OUT" "$WORK/home"
upstream_client_aim 'qubesadmin.config.QREXEC_SERVICES_DIR = os.environ["ODYSSEY_QREXEC_SERVICES"]'
# Payload streams (volume import, also during the restore) go through dom0's qrexec service
# files, which upstream links to qubesd's socket; a shim per method does qrexec's part: the
# request header, then stdin, then the reply to stdout.
mkdir -p "$PYDIR/qrexec-services"
for method in admin.vm.volume.Import admin.vm.volume.ImportWithSize; do
  cat >"$PYDIR/qrexec-services/$method" <<'EOF'
#!/usr/bin/env python3
import os, shutil, socket, sys
method = os.path.basename(sys.argv[0])
arg = sys.argv[1] if len(sys.argv) > 1 else ""
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["ODYSSEY_QUBESD_SOCKET"])
s.sendall(f"{method}+{arg} dom0 name {os.environ['QREXEC_REQUESTED_TARGET']}\0".encode())
with s.makefile("wb") as w:
    shutil.copyfileobj(sys.stdin.buffer, w, 1 << 20)
s.shutdown(socket.SHUT_WR)
with s.makefile("rb") as r:
    shutil.copyfileobj(r, sys.stdout.buffer)
EOF
  chmod +x "$PYDIR/qrexec-services/$method"
done
# qvm-backup writes its profile to a fixed /etc/qubes/backup; point that one module constant at
# odysseyd's --backup-profile-dir instead of touching the system.
cat >"$PYDIR/qvm_backup_here.py" <<'EOF'
import os, sys
import qubesadmin.tools.qvm_backup as tool
tool.backup_profile_dir = os.environ["ODYSSEY_BACKUP_PROFILE_DIR"]
sys.exit(tool.main())
EOF
export ODYSSEY_BACKUP_PROFILE_DIR="$PROFILES"
export ODYSSEY_QREXEC_SERVICES="$PYDIR/qrexec-services"
# The restore extracts into ~/QubesIncoming/backup#restore.
export HOME="$WORK/home"
upstream_client_start_odysseyd --backup-profile-dir "$PROFILES" ||
  upstream_client_fail "odysseyd did not start" "$WORK/daemon.log"

PASS=0
FAIL=0
step() { # step NAME -- COMMAND...: runs it, output to $WORK/<n>.log, counts pass/fail
  local name=$1
  shift 2
  local log="$WORK/step-$((PASS + FAIL)).log"
  if "$@" >"$log" 2>&1 && ! grep -q Traceback "$log"; then
    PASS=$((PASS + 1))
    echo "PASS  $name"
  else
    FAIL=$((FAIL + 1))
    echo "FAIL  $name"
    sed 's/^/        | /' "$log" | tail -n 25
  fi
}
tool() { upstream_client_tool "$@"; }

# --- A qube with data worth restoring -------------------------------------------------------
# 64 MiB private volume: random data between holes, and at the very end (the sparse map's edges).
"$PYTHON" - "$WORK/private.img" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(64 << 20)
    for offset in (0, 5 << 20, (40 << 20) + 512, (64 << 20) - 70000):
        f.seek(offset)
        f.write(os.urandom(70000))
EOF
printf 'correct horse battery staple\n' >"$WORK/passphrase"
step "create template and qube" -- bash -c "$(declare -f upstream_client_tool tool); PYTHON=$PYTHON
  tool qvm-create --class TemplateVM --label black tpl &&
  tool qvm-create --template tpl --label blue work"
step "import the private volume" -- tool qvm-volume import work:private "$WORK/private.img"
step "notes and firewall" -- bash -c "$(declare -f upstream_client_tool tool); PYTHON=$PYTHON
  tool qvm-notes work --set 'notes kept by the backup' &&
  tool qvm-firewall work add --before 0 action=drop dsthost=192.0.2.1"
tool qvm-firewall work list >"$WORK/firewall.before" 2>&1

# --- Backup with qvm-backup -----------------------------------------------------------------
step "qvm-backup (Info summary, Execute)" -- bash -c "
  $PYTHON $PYDIR/qvm_backup_here.py --yes --passphrase-file $WORK/passphrase $OUT work >$WORK/qvm-backup.out &&
  grep -q '^ *work |' $WORK/qvm-backup.out && grep -q 'Total size:' $WORK/qvm-backup.out"
ARCHIVE=$(find "$OUT" -name 'qubes-*' -type f | head -n1)
step "archive written, profile removed by the tool" -- bash -c "
  [[ -n '$ARCHIVE' ]] && [[ -z \$(ls -A $PROFILES) ]]"
step "backup_timestamp set" -- bash -c "$(declare -f upstream_client_tool tool); PYTHON=$PYTHON
  [[ -n \$(tool qvm-prefs work backup_timestamp) ]]"

# --- Upstream's restore reads it -------------------------------------------------------------
step "qvm-backup-restore --verify-only" -- tool qvm-backup-restore --verify-only \
  --passphrase-file "$WORK/passphrase" "$ARCHIVE"
step "wrong passphrase is refused" -- bash -c "
  echo wrong >$WORK/wrong; ! $PYTHON -m qubesadmin.tools.qvm_backup_restore --verify-only \
    --passphrase-file $WORK/wrong $ARCHIVE"
step "remove the qube" -- tool qvm-remove --force work
step "qvm-backup-restore" -- tool qvm-backup-restore --passphrase-file "$WORK/passphrase" "$ARCHIVE"
step "restored private volume is byte-identical" -- cmp "$WORK/private.img" "$STATE/appvms/work/private.img"
step "restored notes" -- bash -c "$(declare -f upstream_client_tool tool); PYTHON=$PYTHON
  [[ \$(tool qvm-notes work --print) == 'notes kept by the backup' ]]"
step "restored firewall" -- bash -c "$(declare -f upstream_client_tool tool); PYTHON=$PYTHON
  diff <(tool qvm-firewall work list) $WORK/firewall.before"

echo "upstream-backup-check: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
