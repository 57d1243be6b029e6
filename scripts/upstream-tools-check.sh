#!/usr/bin/env bash
# Runs the REAL upstream Qubes client tools (qubes-core-admin-client, unmodified)
# against odysseyd and compares exit codes / output with what they print against
# upstream qubesd.
#
# Usage:
#   UPSTREAM_CLIENT=/path/to/extracted/qubes-core-admin-client scripts/upstream-tools-check.sh
#
# Environment:
#   UPSTREAM_CLIENT       checkout of qubes-core-admin-client (directory holding qubesadmin/).
#                         Unset: the check is skipped (exit 0). It is never copied into this repo.
#   PYTHON                interpreter (default /usr/bin/python3, needs >= 3.10; PyYAML/lxml not needed).
#   UPSTREAM_CHECK_SKIP   space-separated groups to skip, e.g. "storage devices" while those
#                         method families are not implemented yet.
#   UPSTREAM_CHECK_KEEP=1 keep the temp dir (daemon log, state) for inspection.
#   VERBOSE=1             print stdout/stderr of every failing invocation (default: first lines).
#
# Expected values below are upstream's behaviour (from the captures in the shared reference
# admin-api-reference.md §1-§8 / Appendix A, and from reading the upstream server source
# where no capture exists), not whatever odysseyd happens to do today.
set -uo pipefail

# The set-up shared with upstream-backup-check.sh (temp dir, client aimed at our socket, daemon).
source "$(dirname "${BASH_SOURCE[0]}")/lib/upstream-client.sh" || exit 2
upstream_client_init upstream-tools-check
upstream_client_prepare
upstream_client_aim
# qvm-notes --edit would start an editor; we never use it, but make sure nothing blocks.
export EDITOR=true VISUAL=true

# --- Start odysseyd ----------------------------------------------------------------------
# No hypervisor (--backend absent): lifecycle calls must then fail with a clean QubesException
# rather than a traceback (checked below).
upstream_client_start_odysseyd || upstream_client_fail "odysseyd did not create $SOCK" "$WORK/daemon.log"

# --- Test helpers --------------------------------------------------------------------------
PASS=0
FAIL=0
FAILED_NAMES=()
GROUP=core

skipped_group() { [[ " ${UPSTREAM_CHECK_SKIP:-} " == *" $GROUP "* ]]; }

# check NAME RC EXPECT -- TOOL [ARGS...]
#   TOOL is a console-script name (qvm-ls, qubes-prefs, ...) or "py" to run a python snippet
#   from $WORK/snippets/<ARGS[0]>.py with the remaining args.
#   EXPECT:
#     -          only the exit code is checked
#     out=TEXT   stdout must equal TEXT (trailing newlines ignored)
#     out~RE     stdout matches extended regex RE
#     all~RE     stdout+stderr matches RE (tools that log to stderr, like qvm-check)
#     tb~RE      upstream itself dies with a traceback here; its last line must match RE
#   Always a failure: a Python traceback (unless tb~), "Got empty response" (an
#   exception qubesd did not turn into a reply), "Invalid response format".
check() {
  local name=$1 want_rc=$2 expect=$3
  shift 4 # name rc expect --
  local tool=$1
  local shown="$*"
  shift
  if skipped_group; then
    echo "SKIP  [$GROUP] $name"
    return
  fi
  local out err rc
  if [[ "$tool" == py ]]; then
    local snippet=$1
    shift
    out=$("$PYTHON" "$WORK/snippets/$snippet.py" "$@" 2>"$WORK/stderr" </dev/null)
  else
    out=$(upstream_client_tool "$tool" "$@" 2>"$WORK/stderr" </dev/null)
  fi
  rc=$?
  err=$(<"$WORK/stderr")
  local why=""
  [[ "$rc" == "$want_rc" ]] || why="exit $rc, expected $want_rc"
  if [[ -z "$why" ]]; then
    case "$expect" in
      -) ;;
      out=*) [[ "$out" == "${expect#out=}" ]] || why="stdout differs" ;;
      out~*) [[ "$out" =~ ${expect#out~} ]] || why="stdout does not match /${expect#out~}/" ;;
      all~*) [[ "$out"$'\n'"$err" =~ ${expect#all~} ]] || why="output does not match /${expect#all~}/" ;;
      tb~*) [[ "$(tail -n1 <<<"$err")" =~ ${expect#tb~} ]] || why="last stderr line does not match /${expect#tb~}/" ;;
      *) why="bad expectation '$expect' in the script" ;;
    esac
  fi
  if [[ -z "$why" && "$expect" != tb~* && "$err" == *Traceback* ]]; then why="python traceback"; fi
  if [[ -z "$why" && "$err$out" == *"Got empty response"* ]]; then why="empty response from the daemon"; fi
  if [[ -z "$why" && "$err$out" == *"Invalid response format"* ]]; then why="malformed response"; fi

  if [[ -z "$why" ]]; then
    PASS=$((PASS + 1))
    echo "PASS  [$GROUP] $name"
  else
    FAIL=$((FAIL + 1))
    FAILED_NAMES+=("$name")
    echo "FAIL  [$GROUP] $name: $why"
    echo "      \$ $shown"
    if [[ "$expect" == out=* ]]; then
      echo "      expected stdout:"
      sed 's/^/        | /' <<<"${expect#out=}"
    fi
    local lines=6
    [[ "${VERBOSE:-}" == 1 ]] && lines=1000
    [[ -n "$out" ]] && { echo "      stdout:"; head -n "$lines" <<<"$out" | sed 's/^/        | /'; }
    [[ -n "$err" ]] && { echo "      stderr (last lines):"; tail -n "$lines" <<<"$err" | sed 's/^/        | /'; }
  fi
}

# Python snippets using the upstream library (qubesadmin) for things no tool prints
# verbatim: wire order of lists, labels, the events stream.
mkdir -p "$WORK/snippets"
# call.py METHOD DEST [ARG] [PAYLOAD]: one raw call through qubesadmin, prints the decoded reply.
cat >"$WORK/snippets/call.py" <<'EOF'
import sys
import qubesadmin
method, dest = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "" else None
payload = sys.argv[4].encode() if len(sys.argv) > 4 else None
app = qubesadmin.Qubes()
try:
    print(app.qubesd_call(dest, method, arg, payload).decode(), end="")
except Exception as e:  # pylint: disable=broad-except
    # Only errors the client built from a daemon reply (qubesadmin.exc.*: QubesException,
    # ProtocolError, ...). The class name is what the client mapped the reply's type to.
    if type(e).__module__ != "qubesadmin.exc":
        raise
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
EOF
cat >"$WORK/snippets/labels.py" <<'EOF'
import qubesadmin
app = qubesadmin.Qubes()
for name in app.labels:
    label = app.labels[name]
    print(label.name, label.index, label.color)
EOF
# events.py CMD...: listens on admin.Events, runs each CMD (a tool invocation, split like a
# shell would) and prints "<subject> <event> <sorted kwargs>" for every event received.
cat >"$WORK/snippets/events.py" <<'EOF'
import asyncio, shlex, sys
import qubesadmin, qubesadmin.events
app = qubesadmin.Qubes()
seen = []
def handler(subject, event, **kwargs):
    seen.append("{} {} {}".format(subject, event, " ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))))
async def main():
    dispatcher = qubesadmin.events.EventsDispatcher(app)
    dispatcher.add_handler("*", handler)
    listener = asyncio.ensure_future(dispatcher.listen_for_events())
    for _ in range(50):                       # wait for connection-established
        if seen:
            break
        await asyncio.sleep(0.1)
    for cmd in sys.argv[1:]:
        words = shlex.split(cmd)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "qubesadmin.tools." + words[0].replace("-", "_"), *words[1:],
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
    await asyncio.sleep(1)
    listener.cancel()
    try:
        await listener
    except asyncio.CancelledError:
        pass
asyncio.run(main())
print("\n".join(seen))
EOF

# ============================================================================================
GROUP=setup
check "qubes-prefs default_kernel set"            0 -                -- qubes-prefs default_kernel 6.6.1
check "qubes-prefs default_kernel get"            0 "out=6.6.1"      -- qubes-prefs default_kernel
check "qvm-create -C TemplateVM"                  0 -                -- qvm-create -C TemplateVM --label black debian-12
check "qvm-create AppVM -t --prop"                0 -                -- qvm-create -C AppVM -t debian-12 --label red --prop provides_network=True --prop netvm= sys-net
check "qubes-prefs default_netvm set"             0 -                -- qubes-prefs default_netvm sys-net
check "qubes-prefs default_template set"          0 -                -- qubes-prefs default_template debian-12
check "qvm-create AppVM (default template)"       0 -                -- qvm-create --label blue work
check "qvm-create -C StandaloneVM"                0 -                -- qvm-create -C StandaloneVM --label green sa
check "qvm-create --prop memory=600"              0 -                -- qvm-create -t debian-12 --label orange --prop memory=600 --prop vcpus=3 work2

# ============================================================================================
GROUP=qvm-ls
check "qvm-ls --raw-list"                         0 $'out=debian-12\ndom0\nsa\nsys-net\nwork\nwork2' -- qvm-ls --raw-list
check "qvm-ls (default columns)"                  0 "out=NAME       STATE    CLASS         LABEL   TEMPLATE   NETVM
debian-12  Halted   TemplateVM    black   -          -
dom0       Running  AdminVM       black   -          -
sa         Halted   StandaloneVM  green   -          sys-net
sys-net    Halted   AppVM         red     debian-12  -
work       Halted   AppVM         blue    debian-12  sys-net
work2      Halted   AppVM         orange  debian-12  sys-net" -- qvm-ls --no-spinner
check "qvm-ls --all --running --raw-list"         0 "out=dom0"       -- qvm-ls --all --running --raw-list
check "qvm-ls --class TemplateVM"                 0 "out=debian-12"  -- qvm-ls --class TemplateVM --raw-list
check "qvm-ls -O columns --raw-data"              0 $'out=sa|4|StandaloneVM|green|sys-net|10.137.0.4|2|6.6.1|pvh
sys-net|2|AppVM|red|-|10.137.0.2|2|6.6.1|pvh
work|3|AppVM|blue|sys-net|10.137.0.3|2|6.6.1|pvh
work2|5|AppVM|orange|sys-net|10.137.0.5|3|6.6.1|pvh' -- qvm-ls --raw-data -O name,qid,class,label,netvm,ip,vcpus,kernel,virt_mode sa sys-net work work2
check "qvm-ls --format network"                   0 $'out=sys-net|Halted|-|10.137.0.2|-|-
work|Halted|sys-net|10.137.0.3|-|10.137.0.2' -- qvm-ls --format network --raw-data sys-net work
check "qvm-ls --format kernel"                    0 $'out=work|Halted|AppVM|debian-12|6.6.1|swiotlb=2048' -- qvm-ls --format kernel --raw-data work
check "qvm-ls --format full (uuid, xid)"          0 "out~^work\\|Halted\\|AppVM\\|blue\\|3\\|-1\\|[0-9a-f-]{36}$" -- qvm-ls --format full --raw-data work
check "qvm-ls -O flags,icon"                      0 $'out=debian-12|t-U-----|templatevm-black\ndom0|0rU-----|adminvm-black' -- qvm-ls --raw-data -O name,flags,icon debian-12 dom0
GROUP=storage
check "qvm-ls --format disk"                      0 "out~^work\\|Halted\\|" -- qvm-ls --format disk --raw-data work
GROUP=qvm-ls
# Wire order: upstream admin.vm.List sorts with AdminVM.__lt__, which puts dom0 first.
check "admin.vm.List order (dom0 first)"          0 "out~^dom0 class=AdminVM state=Running uuid=0{8}-0{4}-0{4}-0{4}-0{12}"$'\n'"debian-12 " -- py call admin.vm.List dom0

# ============================================================================================
GROUP=qvm-prefs
check "qvm-prefs work (list)"                     0 "out~(^|"$'\n'")label +- +blue"$'\n'".*(^|"$'\n'")memory +D +400"$'\n'".*template +- +debian-12" -- qvm-prefs work
check "qvm-prefs get memory"                      0 "out=400"        -- qvm-prefs work memory
check "qvm-prefs set memory"                      0 -                -- qvm-prefs work memory 800
check "qvm-prefs get memory after set"            0 "out=800"        -- qvm-prefs work memory
check "qvm-prefs --default memory"                0 -                -- qvm-prefs --default work memory
check "qvm-prefs get memory after reset"          0 "out=400"        -- qvm-prefs work memory
check "qvm-prefs memory -1"                       1 "all~memory must be positive" -- qvm-prefs work memory -1
check "qvm-prefs memory abc"                      1 "all~Failed to parse property value as int" -- qvm-prefs work memory abc
check "qvm-prefs label by index"                  0 -                -- qvm-prefs work label 6
check "qvm-prefs label nosuch"                    1 "all~Label does not exist: nosuch" -- qvm-prefs work label nosuch
check "qvm-prefs virt_mode HVM lowercased"        0 -                -- qvm-prefs work2 virt_mode HVM
check "qvm-prefs virt_mode get"                   0 "out=hvm"        -- qvm-prefs work2 virt_mode
check "qvm-prefs autostart maybe"                 1 "all~Invalid literal for boolean property: 'maybe'" -- qvm-prefs work autostart maybe
check "qvm-prefs netvm to non-provider"           1 "all~The work2 qube does not provide network" -- qvm-prefs work netvm work2
check "qvm-prefs template of wrong class"         1 "all~wrong VM class: domains\\['work2'\\] is of type AppVM and not TemplateVM" -- qvm-prefs work template work2
check "qvm-prefs --default template"              1 "all~Cannot unset template. You can set it to the current default \\(debian-12\\) instead" -- qvm-prefs --default work template
check "qvm-prefs kernel a/b"                      1 "all~Kernel name cannot contain '/'" -- qvm-prefs work kernel a/b
check "qvm-prefs kernel not installed"            1 "all~Kernel 'nokernel' not installed" -- qvm-prefs work kernel nokernel
check "qvm-prefs keyboard_layout us"              1 "all~invalid number of keyboard layout parameters" -- qvm-prefs work keyboard_layout us
check "qvm-prefs default_dispvm not a dvm tpl"    1 "all~Cannot set invalid property to qube 'work', default_dispvm 'work2' has template_for_dispvms set to False" -- qvm-prefs work default_dispvm work2
check "qvm-prefs nosuchprop"                      2 "all~no such property: 'nosuchprop'" -- qvm-prefs work nosuchprop
check "qvm-prefs nosuchvm"                        2 "all~no such domain: 'nosuchvm'" -- qvm-prefs nosuchvm memory
check "qvm-prefs netvm none"                      0 -                -- qvm-prefs work2 netvm none
check "qvm-prefs netvm get (none)"                0 "out="           -- qvm-prefs work2 netvm
check "qvm-prefs --default netvm"                 0 -                -- qvm-prefs --default work2 netvm
check "qvm-prefs netvm get (default)"             0 "out=sys-net"    -- qvm-prefs work2 netvm
check "qvm-prefs dom0 (list)"                     0 "out~name +D +dom0"$'\n'"qid +D +0" -- qvm-prefs dom0
# property.List order = (load_stage, name): bootmode and kernelopts are stage 4 upstream.
check "admin.vm.property.List order (AppVM)"      0 "out~"$'\n'"xid"$'\n'"audiovm"$'\n'"bootmode"$'\n'"default_dispvm"$'\n'"guivm"$'\n'"kernelopts"$'\n'"management_dispvm"$'\n'"netvm"$'\n'"template$" -- py call admin.vm.property.List work
check "admin.vm.property.List order (TemplateVM)" 0 "out~"$'\n'"xid"$'\n'"appvm_default_bootmode"$'\n'"audiovm"$'\n'"bootmode"$'\n' -- py call admin.vm.property.List debian-12

# ============================================================================================
GROUP=qubes-prefs
check "qubes-prefs (list)"                        0 "out~default_kernel +- +6.6.1"$'\n'"default_netvm +- +sys-net" -- qubes-prefs
# A fresh upstream qubes.xml sets default_pool_kernel=linux-kernel explicitly (load_initial_values).
check "qubes-prefs default_pool_kernel"           0 "out=linux-kernel" -- qubes-prefs default_pool_kernel
check "qubes-prefs default_template wrong class"  1 "all~wrong VM class: domains\\['work'\\] is of type AppVM and not TemplateVM" -- qubes-prefs default_template work
check "qubes-prefs --default default_template"    0 -                -- qubes-prefs --default default_template
check "qubes-prefs default_template (unset)"      0 "out="           -- qubes-prefs default_template
check "qubes-prefs default_template set again"    0 -                -- qubes-prefs default_template debian-12
check "qubes-prefs default_kernel missing"        1 "all~Kernel '9.9' not installed" -- qubes-prefs default_kernel 9.9
check "qubes-prefs read-only maxmem"              1 "all~property 'maxmem'" -- qubes-prefs maxmem 5
check "qubes-prefs nosuch"                        2 "all~no such property: 'nosuch'" -- qubes-prefs nosuch

# ============================================================================================
GROUP=features
check "qvm-features (empty)"                      0 "out="           -- qvm-features work
check "qvm-features set"                          0 -                -- qvm-features work foo bar
check "qvm-features get"                          0 "out=bar"        -- qvm-features work foo
check "qvm-features set empty value"              0 -                -- qvm-features work empty ''
check "qvm-features list"                         0 $'out=foo    bar\nempty  ' -- qvm-features work
check "qvm-features get missing"                  1 "out="           -- qvm-features work nope
check "qvm-features --unset"                      0 -                -- qvm-features --unset work foo
check "qvm-features --unset missing"              0 -                -- qvm-features --unset work foo
check "qvm-features bad name (upstream: traceback)" 1 "tb~ProtocolError: feature name contains illegal characters" -- qvm-features work bad/name x
check "qvm-features prohibited name"              1 "tb~PermissionDenied: changing this feature is prohibited by qubes.ext.admin.AdminExtension" -- qvm-features work deferred-netvm-original x
check "qvm-service enable"                        0 -                -- qvm-service work cups on
check "qvm-service disable"                       0 -                -- qvm-service work ntp off
check "qvm-service list"                          0 $'out=cups  on\nntp   off' -- qvm-service work
check "qvm-service --disable"                     0 -                -- qvm-service --disable work cups
check "qvm-service get"                           0 "out=off"        -- qvm-service work cups
check "qvm-service --enable"                      0 -                -- qvm-service --enable work cups
check "qvm-service --unset"                       0 -                -- qvm-service --unset work cups
check "qvm-service get unset"                     1 "out="           -- qvm-service work cups

# ============================================================================================
GROUP=tags
# ext/gui and ext/audio tag every qube with guivm-<guivm> / audiovm-<audiovm> on creation.
check "qvm-tags list (fresh qube)"                0 $'out=audiovm-dom0\ncreated-by-dom0\nguivm-dom0' -- qvm-tags work
check "qvm-tags add"                              0 -                -- qvm-tags work add t1 t2
check "qvm-tags list t1"                          0 "out=t1"         -- qvm-tags work list t1
check "qvm-tags list missing"                     1 "out="           -- qvm-tags work list nosuch
check "qvm-tags del"                              0 -                -- qvm-tags work del t1
check "qvm-tags del missing"                      0 -                -- qvm-tags work del nosuch
check "qvm-tags add bad chars"                    1 "all~disallowed characters" -- qvm-tags work add 'bad!tag'
check "qvm-tags list after"                       0 "out~(^|"$'\n'")t2$" -- qvm-tags work

# ============================================================================================
GROUP=firewall
FW_HEAD="NO  ACTION  HOST  PROTOCOL  PORT(S)  SPECIAL TARGET  ICMP TYPE  EXPIRE  COMMENT"
check "qvm-firewall list (default)"               0 "out=$FW_HEAD
0   accept  -     -         -        -               -          -       -" -- qvm-firewall work
check "qvm-firewall add accept"                   0 -                -- qvm-firewall work add accept dsthost=1.2.3.4 proto=tcp dstports=80
check "qvm-firewall add drop with comment"        0 -                -- qvm-firewall work add drop dsthost=example.com proto=udp dstports=53-54 comment=hello
check "qvm-firewall --raw list"                   0 $'out=action=accept\naction=accept proto=tcp dst4=1.2.3.4/32 dstports=80-80\naction=drop proto=udp dsthost=example.com dstports=53-54 comment=hello' -- qvm-firewall --raw work list
# Server-side serialisation order (api_rule): action, expire, dst, proto, specialtarget, dstports, icmptype, comment.
check "admin.vm.firewall.Get wire order"          0 $'out=action=accept\naction=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80\naction=drop dsthost=example.com proto=udp dstports=53-54 comment=hello' -- py call admin.vm.firewall.Get work
check "qvm-firewall del --rule-no"                0 -                -- qvm-firewall work del --rule-no 1
check "qvm-firewall after del"                    0 $'out=action=accept\naction=drop proto=udp dsthost=example.com dstports=53-54 comment=hello' -- qvm-firewall --raw work list
check "qvm-firewall reset"                        0 -                -- qvm-firewall work reset
check "qvm-firewall after reset"                  0 "out=action=accept" -- qvm-firewall --raw work list
check "qvm-firewall dom0 (upstream: traceback)"   1 "tb~ProtocolError: expected destination to not be AdminVM" -- qvm-firewall dom0

# ============================================================================================
GROUP=check-notes-lifecycle
check "qvm-check existing"                        0 "all~work: exists" -- qvm-check work
check "qvm-check missing"                         1 "all~nosuch: non-existent" -- qvm-check nosuch
check "qvm-check --running halted"                1 "all~None of qubes: running" -- qvm-check --running work
check "qvm-check --running dom0"                  0 "all~dom0: running" -- qvm-check --running dom0
check "qvm-check --template"                      0 "all~debian-12: template" -- qvm-check --template debian-12
check "qvm-notes --print (empty)"                 0 "out="           -- qvm-notes --print work
check "qvm-notes --set"                           0 -                -- qvm-notes --set 'hello notes' work
check "qvm-notes --print"                         0 "out=hello notes" -- qvm-notes --print work
printf 'line1\n\tline2 caf\xc3\xa9 \x01x\n' >"$WORK/notes.txt"
check "qvm-notes --import"                        0 -                -- qvm-notes --import "$WORK/notes.txt" work
# Control characters other than tab/newline are replaced by '_'.
check "qvm-notes --print imported"                0 $'out=line1\n\tline2 caf\xc3\xa9 _x' -- qvm-notes --print work
# No backend: a clean error message and exit 1, never a traceback.
check "qvm-start (no backend)"                    1 "all~Starting qube failed: work" -- qvm-start work
check "qvm-shutdown halted (ignored)"             0 -                -- qvm-shutdown work
check "qvm-shutdown --wait halted"                0 -                -- qvm-shutdown --wait work
check "qvm-kill halted (ignored)"                 0 -                -- qvm-kill work
check "qvm-pause halted"                          1 "all~Domain not running \\(either powered off or paused\\): 'work'" -- qvm-pause work
check "qvm-unpause halted"                        1 "all~Domain is not paused: 'work'" -- qvm-unpause work

# ============================================================================================
GROUP=create-remove
check "qvm-create existing name"                  1 "all~Qube already exists: work" -- qvm-create --label red work
check "qvm-create missing template"               1 "all~No such domain: 'nosuchtpl'" -- qvm-create --label red -t nosuchtpl x1
check "qvm-create bad name"                       1 "all~VM name cannot start with hyphen, underscore, dot or numbers" -- qvm-create --label red 1bad
check "qvm-create unknown label"                  2 "all~no such label: 'nosuchlabel'" -- qvm-create --label nosuchlabel x2
check "qvm-create --prop bad value"               2 "all~Error setting property memory \\(but VM created\\): memory must be positive" -- qvm-create --label red --prop memory=-5 x3
check "qvm-prefs template_for_dispvms"            0 -                -- qvm-prefs work2 template_for_dispvms True
check "qvm-create -C DispVM"                      0 -                -- qvm-create -C DispVM -t work2 --label red d1
check "qvm-prefs on the DispVM"                   0 "out=work2"      -- qvm-prefs d1 template
check "qvm-remove -f"                             0 -                -- qvm-remove -f x3
check "qvm-remove -f again"                       2 "all~no such domain: 'x3'" -- qvm-remove -f x3
check "qvm-remove template in use"                1 "all~Domain is in use: 'debian-12'" -- qvm-remove -f debian-12
check "qvm-remove dom0"                           1 "all~'dom0' cannot be removed" -- qvm-remove -f dom0

# ============================================================================================
GROUP=labels
check "labels via qubesadmin"                     0 $'out=red 1 0xcc0000\norange 2 0xf57900\nyellow 3 0xedd400\ngreen 4 0x73d216\ngray 5 0x555555\nblue 6 0x3465a4\npurple 7 0x75507b\nblack 8 0x000000' -- py labels
check "admin.label.Create"                        0 "out="           -- py call admin.label.Create dom0 mylabel 0x123456
check "admin.label.Index custom"                  0 "out=9"          -- py call admin.label.Index dom0 mylabel
check "admin.label.Remove default"                1 "out=ProtocolError: Can only remove custom labels" -- py call admin.label.Remove dom0 red
# qubesadmin.exc has no QubesInvalidLabel*Error, so the client maps both to QubesException.
check "admin.label.Create digits"                 1 "out=QubesException: Label must not be a digit" -- py call admin.label.Create dom0 123 0x123456
check "admin.label.Create short colour"           1 "out=QubesException: Label value must have length of 8" -- py call admin.label.Create dom0 x9 0x12345
check "admin.label.Remove custom"                 0 "out="           -- py call admin.label.Remove dom0 mylabel

# ============================================================================================
GROUP=events
check "events: property set"                      0 "out~(^|"$'\n'")None connection-established "$'\n'".*work property-set:memory name=memory newvalue=700 oldvalue=400" -- py events "qvm-prefs work memory 700"
check "events: domain add/delete"                 0 "out~None domain-add vm=ev1"$'\n'".*None domain-delete vm=ev1" -- py events "qvm-create --label red ev1" "qvm-remove -f ev1"
# Changing default_netvm announces the change to every qube following the default: a
# property-pre-set:netvm (with old/new value) and a property-reset:netvm with oldvalue.
check "events: default_netvm change"              0 "out~work property-pre-set:netvm name=netvm newvalue=None oldvalue=sys-net"$'\n'".*work property-reset:netvm name=netvm oldvalue=sys-net" -- py events "qubes-prefs default_netvm ''"
# Computed properties announce their change with property-reset:<p> so that caching clients
# (qui widgets, Qube Manager) refresh them.
check "events: label change resets icon"         0 "out~work property-reset:icon name=icon"$'\n'"work property-set:label " -- py events "qvm-prefs work label purple"
check "events: provides_network resets gateway"   0 "out~work2 property-reset:gateway name=gateway" -- py events "qvm-prefs work2 provides_network True" "qvm-prefs work2 provides_network False"
check "qubes-prefs default_netvm restore"         0 -                -- qubes-prefs default_netvm sys-net

# ============================================================================================
GROUP=storage
check "qvm-pool list"                             0 "out~varlibqubes" -- qvm-pool list
check "qvm-volume list"                           0 "out~varlibqubes:appvms/work/private +work +private" -- qvm-volume list work
GROUP=devices
check "qvm-device pci list"                       0 -                -- qvm-device pci list

echo
if ((FAIL > 0)); then
  echo "failed:"
  printf '  - %s\n' "${FAILED_NAMES[@]}"
  if [[ "${UPSTREAM_CHECK_KEEP:-}" == 1 ]]; then
    echo "daemon log: $WORK/daemon.log"
  else
    echo "(rerun with UPSTREAM_CHECK_KEEP=1 to keep the daemon log and state dir)"
  fi
fi
echo "$PASS passed, $FAIL failed"
((FAIL == 0))
