"""Differential run: the same Admin API requests, in lock step, to upstream's handler and odysseyd.

Usage: python3 differential.py --upstream SOCK --upstream-base DIR --ours SOCK --ours-base DIR
                               --upstream-methods FILE --our-methods FILE [--seed N] [--count N] [--json OUT] [--log OUT]

Both daemons start from their own fresh state and receive the same set-up calls (SETUP), then the
generated requests (generate.py). Each reply is normalised (uuids, qids, scratch paths, disposable
numbers, timestamps; the traceback field dropped) and compared. The report groups mismatches by
method family and mismatch class with one example each; deviations documented in the README's
upstream compatibility table (deviations.py) are counted apart. Exit status: 0 when every
difference is a documented deviation, 1 otherwise.
"""

import argparse
import collections
import json
import re
import socket
import sys

import deviations
import generate

# The state of admin-api-reference Appendix A, built through the API on both sides.
SETUP = [
    ("admin.property.Set", "dom0", "default_kernel", "6.6.1"),
    ("admin.vm.Create.TemplateVM", "dom0", "", "name=debian-12 label=black"),
    ("admin.property.Set", "dom0", "default_template", "debian-12"),
    ("admin.vm.Create.AppVM", "dom0", "debian-12", "name=sys-net label=red"),
    ("admin.vm.property.Set", "sys-net", "netvm", ""),
    ("admin.vm.property.Set", "sys-net", "provides_network", "True"),
    ("admin.property.Set", "dom0", "default_netvm", "sys-net"),
    ("admin.vm.Create.AppVM", "dom0", "debian-12", "name=work label=blue"),
    ("admin.vm.Create.AppVM", "dom0", "debian-12", "name=newvm label=red"),
    ("admin.vm.Create.AppVM", "dom0", "debian-12", "name=dvm1 label=red"),
    ("admin.vm.property.Set", "dvm1", "template_for_dispvms", "True"),
]

# Method name endings that change nothing.
READS = (".List", ".Get", ".GetAll", ".GetDefault", ".Help", ".Info", ".Index", ".ListSnapshots",
         ".Available", ".Assigned", ".Attached", ".UsageDetails", ".ListDrivers", "CurrentState",
         ".CheckWithTemplate", ".CheckWithNetvm", ".CheckWithAdminVM", ".CheckWithTemplateAndAdminVM")

# Methods left out of the generated requests, and why (printed in the report).
EXCLUDED = {
    "admin.Events": "streams events until the client leaves: no single reply to compare",
    "admin.vm.Stats": "streams statistics until the client leaves",
    "admin.vm.Start": "needs a hypervisor; upstream runs here on a Mock of libvirt",
    "admin.vm.Console": "needs a running qube's console",
    "admin.backup.Execute": "writes a backup to a real target",
    "admin.vm.notes.Set": "upstream sanitises notes with libqubes-pure, a C library Debian lacks",
}

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DISP_RE = re.compile(r"\bdisp\d+\b")
# Revision names and timestamps in a volume's snapshot list.
TIME_RE = re.compile(r"\b1\d{9}(\.\d+)?")
# Properties whose value differs by construction (counters, clocks), and global ones read from
# the host (its CPUs; upstream_server.py gives upstream this machine's memory).
VOLATILE_PROPS = {"qid", "xid", "start_time", "uuid", "stubdom_xid", "backup_timestamp", "dispid"}
HOST_PROPS = {"no_cpus"}


class Daemon:
    def __init__(self, name, sock, base):
        self.name = name
        self.sock = sock
        self.base = base
        self.uuids = {}
        self.classes = {}

    def raw(self, method, dest, arg, payload):
        header = f"{method}+{arg} dom0 name {dest}\0".encode("utf-8")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(self.sock)
            s.sendall(header + payload.encode("utf-8"))
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def resolve(self, text):
        text = text.replace("{base}", self.base)
        return re.sub(r"\{uuid:([^}]*)\}", lambda m: "uuid:" + self.uuids.get(m.group(1), "0" * 36), text)

    def call(self, request):
        method, dest, arg, payload = (self.resolve(part) for part in request)
        return self.raw(method, dest, arg, payload)

    def refresh_uuids(self):
        reply = self.raw("admin.vm.List", "dom0", "", "")
        self.uuids = {}
        self.classes = {}
        for line in reply[2:].decode("utf-8", "replace").splitlines():
            name = line.split(" ", 1)[0]
            found = UUID_RE.search(line)
            if found:
                self.uuids[name] = found.group(0).lower()
            klass = re.search(r" class=(\w+)", line)
            if klass:
                self.classes[name] = klass.group(1)


def parse(reply):
    """(kind, type, text): ok/exc/empty/malformed, the exception type, the body or message."""
    if not reply:
        return ("empty", "", "")
    if reply.startswith(b"0\0"):
        return ("ok", "", reply[2:].decode("utf-8", "backslashreplace"))
    if reply.startswith(b"2\0"):
        fields = reply[2:].split(b"\0")
        if len(fields) >= 3:
            return ("exc", fields[0].decode("ascii", "replace"), fields[2].decode("utf-8", "backslashreplace"))
    return ("malformed", "", reply[:200].decode("utf-8", "backslashreplace"))


def normalise(daemon, request, parsed):
    kind, etype, text = parsed
    names = {uuid: name for name, uuid in daemon.uuids.items()}
    text = UUID_RE.sub(lambda m: "<uuid:" + names.get(m.group(0).lower(), "?") + ">", text)
    text = text.replace(daemon.base, "<base>")
    text = DISP_RE.sub("disp<N>", text)
    # Python prints a set in hash order, which differs from run to run.
    text = re.sub(r"\{('[^{}]*')\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", text)
    # Addresses derived from a disposable's random dispid.
    text = re.sub(r"\b10\.138\.\d+\.\d+\b", "<dispvm-ip>", text)
    if request[0].endswith("ListSnapshots"):
        text = TIME_RE.sub("<time>", text)
    method, _, arg, _ = request
    masked = VOLATILE_PROPS | (HOST_PROPS if method.startswith("admin.property.") else set())
    if kind == "ok" and ".property." in method:
        if method.endswith((".Get", ".GetDefault")) and arg in masked:
            text = re.sub(r"\S+$", "<n>", text)
        elif method.endswith(".GetAll"):
            text = "\n".join(
                re.sub(r"\S+$", "<n>", line) if line.split(" ", 1)[0] in masked else line
                for line in text.split("\n")
            )
    if kind == "ok" and method in ("admin.pool.Info", "admin.pool.UsageDetails"):
        # The scratch directories' file system: its size and usage are the host's.
        text = re.sub(r"^(\w*(?:size|usage)\w*)=\d+$", r"\1=<n>", text, flags=re.M)
    if kind == "ok" and method.endswith("volume.CloneFrom"):
        text = "<token>" if re.fullmatch(r"[A-Za-z0-9]{32}", text) else text
    return kind, etype, text


def family(method):
    """admin.vm.property.Set -> vm.property; admin.vm.Create.AppVM -> vm; admin.pool.Info -> pool."""
    parts = method.split(".")[1:]
    lower = []
    for part in parts:
        if part[:1].isupper():
            break
        lower.append(part)
    return ".".join(lower) or parts[0]


def classify(up, ours):
    if up[0] != ours[0] or up[1] != ours[1]:
        return f"upstream {up[0]}{(' ' + up[1]) if up[1] else ''}, ours {ours[0]}{(' ' + ours[1]) if ours[1] else ''}"
    if up[0] == "exc":
        return f"{up[1]}: message differs"
    return f"{up[0]}: body differs"


def show(request):
    method, dest, arg, payload = request
    return f"{method}+{arg} -> {dest} payload={payload!r}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--upstream-base", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--ours-base", required=True)
    ap.add_argument("--upstream-methods", required=True, help="JSON list of the methods upstream serves")
    ap.add_argument("--our-methods", required=True, help="JSON list of the methods odysseyd serves")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--json")
    ap.add_argument("--log", help="write every request and both normalised replies here, one JSON line each")
    opts = ap.parse_args()

    up = Daemon("upstream", opts.upstream, opts.upstream_base)
    ours = Daemon("odysseyd", opts.ours, opts.ours_base)
    with open(opts.upstream_methods, encoding="utf-8") as f:
        upstream_methods = set(json.load(f))
    with open(opts.our_methods, encoding="utf-8") as f:
        methods = upstream_methods | set(json.load(f))

    for request in SETUP:
        for daemon in (up, ours):
            reply = parse(daemon.call(request))
            if reply[0] != "ok":
                sys.exit(f"set-up call {show(request)} failed on {daemon.name}: {reply}")
    for daemon in (up, ours):
        daemon.refresh_uuids()

    # A write only odysseyd serves would change one side's state alone; its reads still run.
    excluded = dict(EXCLUDED)
    for name in sorted(methods - upstream_methods):
        if name.startswith("admin.odyssey."):
            # Upstream answers it with an error, which the harness reads as one side's state changing.
            excluded[name] = "only odysseyd serves it: its reply is admin.vm.List's and GetAll's, compared here"
        elif not name.endswith((".Info", ".ListSnapshots", ".List")):
            excluded[name] = "a write only odysseyd serves (the 2017 draft's): it would change one side alone"

    compared = 0
    diverged = None
    mismatches = collections.defaultdict(list)
    deviated = collections.Counter()
    per_method = collections.Counter()
    log = open(opts.log, "w", encoding="utf-8") if opts.log else None
    for request in generate.generate(opts.seed, opts.count, sorted(methods), excluded):
        replies = [parse(daemon.call(request)) for daemon in (up, ours)]
        if request[0].startswith(("admin.vm.Create", "admin.vm.Remove")) and "ok" in (replies[0][0], replies[1][0]):
            for daemon in (up, ours):
                daemon.refresh_uuids()
        compared += 1
        a = normalise(up, request, replies[0])
        b = normalise(ours, request, replies[1])
        if log:
            log.write(json.dumps({"request": request, "upstream": a, "ours": b}) + "\n")
        one_sided = (a[0] == "ok") != (b[0] == "ok")
        if diverged is None and one_sided and not request[0].endswith(READS):
            # From here on the two states may differ, and later replies with them.
            diverged = (compared, request)
        if a == b:
            continue
        known = deviations.match(request, a, b, upstream_methods, up.classes)
        if known:
            deviated[known] += 1
            continue
        mismatches[(family(request[0]), classify(a, b))].append((request, a, b))
        per_method[request[0]] += 1

    if log:
        log.close()
    report(compared, mismatches, deviated, per_method, opts, excluded, diverged)
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "seed": opts.seed,
                    "compared": compared,
                    "mismatches": sum(len(v) for v in mismatches.values()),
                    "deviations": dict(deviated),
                    "classes": [
                        {"family": fam, "class": cls, "count": len(items), "example": items[0]}
                        for (fam, cls), items in sorted(mismatches.items())
                    ],
                },
                f,
                indent=1,
            )
    return 0 if not mismatches else 1


def report(compared, mismatches, deviated, per_method, opts, excluded, diverged):
    total = sum(len(v) for v in mismatches.values())
    print(f"differential: seed {opts.seed}, {compared} requests compared")
    print("excluded methods:")
    for name, why in sorted(excluded.items()):
        print(f"  {name}: {why}")
    print(f"documented deviations ({sum(deviated.values())} replies):")
    for name, count in deviated.most_common():
        print(f"  {count:5d}  {name}")
    by_family = collections.defaultdict(list)
    for (fam, cls), items in mismatches.items():
        by_family[fam].append((cls, items))
    for fam in sorted(by_family, key=lambda f: -sum(len(i) for _, i in by_family[f])):
        classes = sorted(by_family[fam], key=lambda c: -len(c[1]))
        print(f"\n== {fam}: {sum(len(i) for _, i in classes)} mismatches")
        for cls, items in classes:
            request, a, b = items[0]
            print(f"  {len(items):5d}  {cls}")
            print(f"         e.g. {show(request)}")
            print(f"           upstream: {a}")
            print(f"           ours:     {b}")
    print("\nmismatches per method:")
    for name, count in per_method.most_common():
        print(f"  {count:5d}  {name}")
    if diverged:
        print(f"\nstate diverged at request {diverged[0]}: {show(diverged[1])} succeeded on one side only;")
        print("later mismatches may follow from that one difference")
    rate = 100.0 * total / compared if compared else 0.0
    print(f"\nmismatch rate: {total}/{compared} = {rate:.2f}% (beyond {sum(deviated.values())} documented deviations)")


if __name__ == "__main__":
    sys.exit(main())
