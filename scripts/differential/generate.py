"""Seeded generator of Admin API requests over the whole method table.

A request is (method, dest, arg, payload) of strings in which `{uuid:NAME}` and `{base}` are
placeholders: each daemon gets its own qube uuids and scratch directory substituted, so that the
same request means the same thing to both. Values are drawn from pools of valid and invalid
inputs per method family; a share of requests is then broken on purpose (argument where none is
wanted, missing payload, stray bytes) to exercise the argument checks and their order.
"""

import random

# The qubes of the common set-up (differential.py SETUP) and the names the run creates.
QUBES = ["dom0", "debian-12", "sys-net", "work", "newvm", "dvm1"]
CREATED = ["gen-1", "gen-2", "gen-3", "rem-1"]
BAD_DESTS = [
    "nosuch",
    "",
    "uuid:",
    "uuid:00000000-0000-0000-0000-00000000abcd",
    "uuid:not-a-uuid",
    "{uuid:work}",
    "{uuid:dom0}",
    "{uuid:debian-12}",
    "Work",
    "-bad",
    "caf\u00e9",
]

VM_PROPS = {
    "int": ["memory", "maxmem", "vcpus", "qrexec_timeout", "shutdown_timeout", "stubdom_mem"],
    "bool": [
        "provides_network",
        "template_for_dispvms",
        "include_in_backups",
        "autostart",
        "debug",
        "updateable",
        "installed_by_rpm",
    ],
    "vm": ["netvm", "template", "default_dispvm", "management_dispvm", "audiovm", "guivm"],
    "label": ["label"],
    "str": [
        "kernel",
        "kernelopts",
        "virt_mode",
        "ip",
        "ip6",
        "mac",
        "default_user",
        "keyboard_layout",
        "bootmode",
        "appvm_default_bootmode",
        "name",
    ],
    "ro": [
        "qid",
        "uuid",
        "xid",
        "start_time",
        "klass",
        "icon",
        "visible_ip",
        "visible_ip6",
        "visible_gateway",
        "visible_netmask",
        "dns",
        "gateway",
        "stubdom_xid",
        "backup_timestamp",
        "dispid",
        "auto_cleanup",
    ],
    "bad": ["nosuch", "", "Memory", "name ", "__class__", "firewall"],
}
GLOBAL_PROPS = {
    "vm": [
        "default_netvm",
        "default_template",
        "default_dispvm",
        "clockvm",
        "updatevm",
        "management_dispvm",
        "default_guivm",
        "default_audiovm",
    ],
    "int": ["default_qrexec_timeout", "default_shutdown_timeout", "stats_interval"],
    "str": [
        "default_kernel",
        "default_pool",
        "default_pool_private",
        "default_pool_root",
        "default_pool_volatile",
        "default_pool_kernel",
        "default_keyboard_layout",
        "default_virt_mode",
    ],
    "bool": ["check_updates_vm"],
    "bad": ["nosuch", "", "memory", "default_netvm "],
}
VALUES = {
    "int": [
        "0",
        "1",
        "2",
        "400",
        "4000",
        "-5",
        "abc",
        "",
        " 5",
        "0x10",
        "1e3",
        "9007199254740991",
        "9007199254740993",
        "12345678901234567890123",
        "+3",
        "1_000",
    ],
    "bool": ["True", "False", "true", "1", "0", "yes", "no", "", " True", "on", "false "],
    "vm": ["", "sys-net", "work", "dom0", "debian-12", "dvm1", "nosuch", "None", "newvm", "{uuid:work}"],
    "label": ["red", "blue", "label-1", "purple", "nosuch", "", "black", "8"],
    "str": [
        "",
        "6.6.1",
        "nosuch",
        "hvm",
        "pv",
        "pvh",
        "10.137.0.5",
        "fd09:24ef:4179::a89:5",
        "fe80::1%eth0",
        "00:16:3e:5e:6c:00",
        "us+dvorak",
        "user",
        "varlibqubes",
        "linux-kernel",
        "default",
        "new-name",
        "x" * 40,
        "caf\u00e9",
        "a b",
    ],
}
VALUES["ro"] = VALUES["str"] + VALUES["int"][:3]
VALUES["bad"] = ["x", ""]

FEATURES = [
    "service.cups",
    "gui",
    "qrexec",
    "os",
    "servicevm",
    "supported-service.x",
    "preload-dispvm-max",
    "template-label",
    "bad name!",
    "",
    "x" * 300,
    "internal",
    "vmexec",
]
FEATURE_VALUES = ["1", "", "0", "value", "caf\u00e9", "a\x01b", "x" * 100, "True"]
# A template whose os is Windows gives its new qubes a copy of its private volume.
OS_VALUES = ["Windows", "Windows", "Linux"]
TAGS = ["t1", "work-docs", "created-by-dom0", "bad!tag", "", "a" * 60, "x-y_z.1", "audiovm-dom0"]
LABELS = ["red", "mylabel", "other-label", "123", "bad name", "", "label-1", "black", "x" * 40]
LABEL_COLOURS = ["0x123456", "0x12345", "123456", "0xzzzzzz", "", "0x1234567", "0xABCDEF"]
FIREWALLS = [
    "action=accept\n",
    "action=drop\n",
    "action=accept proto=tcp dstports=1-1024\naction=drop proto=icmp comment=No ICMP\naction=accept\n",
    "action=accept dsthost=10.1.2.3\naction=drop\n",
    "action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80\n",
    "action=drop dsthost=example.com proto=udp dstports=53-54 comment=hello\n",
    "action=accept specialtarget=dns\naction=drop\n",
    "action=accept dst6=fd00::/8\n",
    "action=accept icmptype=8 proto=icmp\n",
    "action=accept expire=1499450306 proto=udp\n",
    "protoxyz=tcp\n",
    "action=maybe\n",
    "action=accept dstports=80\n",
    "action=accept proto=tcp dstports=0-70000\n",
    "action=accept dst4=1.2.3.4/33\n",
    "action=accept\naction=accept\n" * 3,
    "",
    "action=accept",
]
DENIED = ["u******", "b******", "*******", "uabcdef", "x", "", "u******b******", "u******u******", "p0e0300", "U******"]
POOLS = ["varlibqubes", "linux-kernel", "nosuch", "", "p1", "p2"]
POOL_ADD = [
    "name=p1\ndir_path={base}/p1\n",
    "name=p2\ndir_path={base}/p2\nrevisions_to_keep=2\n",
    "name=p1\n",
    "name=varlibqubes\ndir_path={base}/x\n",
    "dir_path={base}/p3\n",
    "name=p4\ndir_path={base}/p4\nnosuch=1\n",
    "name=p 5\ndir_path={base}/p5\n",
    "",
]
DRIVERS = ["file", "linux-kernel", "file-reflink", "nosuch", "lvm_thin", "callback", "zfs", ""]
VOLUMES = ["root", "private", "volatile", "kernel", "nosuch", ""]
SIZES = ["1073741824", "10737418240", "0", "-1", "abc", "", "2147483648", "99999999999999999999999"]
CREATE_PAYLOADS = [
    "name={new} label=red",
    "name={new} label=blue",
    "name={new} label=label-1",
    "name={new}",
    "label=red",
    "name=1bad label=red",
    "name=none label=red",
    "name=default label=red",
    "name=work label=red",
    "name={new} label=nosuch",
    "name={new} label=red pool=varlibqubes",
    "name={new} label=red pool=nosuch",
    "name={new} label=red pool:private=varlibqubes",
    "name={new} label=red pool:nosuch=varlibqubes",
    "name={new} label=red extra=1",
    "name=" + "x" * 40 + " label=red",
    "",
    "name={new}  label=red",
]
TEMPLATES = ["", "debian-12", "work", "dvm1", "nosuch", "sys-net"]
SHUTDOWN_ARGS = ["", "force", "wait", "force+wait", "force+force", "bad", "wait+force"]
DEVICE_ARGS = ["", "dom0+00_1f.0", "sys-net+sda", "dom0+sda:abc", "nosuch+x", "dom0", "dom0+00_1f.0:0000:0000::p0e0300"]
DEVICE_PAYLOADS = [
    "",
    "required='yes' attach_automatically='yes' ident='00_1f.0' devclass='pci' backend_domain='dom0' frontendomain=''",
    "attach_automatically='yes'",
    "required='yes'",
    "x",
    "True",
    "False",
]
JUNK_ARGS = ["x", "../etc", "caf\u00e9", "a b", "+", "a" * 300]
JUNK_PAYLOADS = ["x", "\x00\x01", "caf\u00e9", "a=b", "True"]


def pick_dest(rng, method):
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(QUBES)
    if roll < 0.75:
        return rng.choice(CREATED)
    if roll < 0.88 and not method.startswith(("admin.label.", "admin.pool.", "admin.property.")):
        return rng.choice(["{uuid:work}", "{uuid:dvm1}", "{uuid:debian-12}"])
    return rng.choice(BAD_DESTS)


def props_for(method):
    return GLOBAL_PROPS if method.startswith("admin.property.") else VM_PROPS


def property_call(rng, method):
    table = props_for(method)
    kind = rng.choice(list(table))
    arg = rng.choice(table[kind])
    payload = ""
    if method.endswith(".Set"):
        payload = rng.choice(VALUES[kind])
    return arg, payload


def new_name(rng):
    return rng.choice(CREATED + ["gen-4", "gen-5"])


def for_method(rng, method):
    """(dest, arg, payload) for one call of METHOD, before the deliberate breakage."""
    dest = pick_dest(rng, method)
    parts = method.split(".")
    last = parts[-1]
    if method.startswith(("admin.property.", "admin.vm.property.")):
        if method.startswith("admin.property."):
            dest = "dom0" if rng.random() < 0.85 else dest
        arg, payload = property_call(rng, method)
        if last in ("List", "GetAll"):
            arg = ""
        return dest, arg, payload
    if method.startswith("admin.vm.feature."):
        arg = "" if last == "List" else rng.choice(FEATURES)
        if arg == "os" and last == "Set":
            # Mostly on the template the run's new qubes are made from.
            return "debian-12" if rng.random() < 0.6 else dest, arg, rng.choice(FEATURE_VALUES + OS_VALUES)
        return dest, arg, rng.choice(FEATURE_VALUES) if last == "Set" else ""
    if method.startswith("admin.vm.tag."):
        return dest, "" if last == "List" else rng.choice(TAGS), ""
    if method.startswith("admin.label."):
        dest = "dom0" if rng.random() < 0.85 else dest
        arg = "" if last == "List" else rng.choice(LABELS)
        return dest, arg, rng.choice(LABEL_COLOURS) if last == "Create" else ""
    if method.startswith("admin.vm.firewall."):
        return dest, "", rng.choice(FIREWALLS) if last == "Set" else ""
    if method.startswith("admin.vm.notes."):
        return dest, "", rng.choice(["hello", "line1\n\tline2 caf\u00e9 \x01x", ""]) if last == "Set" else ""
    if method.startswith("admin.vm.device.denied."):
        return dest, "", "" if last == "List" else rng.choice(DENIED)
    if method.startswith("admin.vm.device."):
        if last in ("Available", "Assigned", "Attached"):
            return dest, rng.choice(["", "", "00_1f.0", "sda"]), ""
        payload = rng.choice(DEVICE_PAYLOADS) if last in ("Assign", "Attach", "assignment") else ""
        return dest, rng.choice(DEVICE_ARGS), payload
    if method == "admin.pool.Add":
        return "dom0", rng.choice(DRIVERS), rng.choice(POOL_ADD)
    if method.startswith("admin.pool.volume."):
        arg = rng.choice(POOLS)
        vid = rng.choice(["appvms/work/private", "vm-templates/debian-12/root", "nosuch"])
        extra = {"Resize": " " + rng.choice(SIZES), "Revert": " 1700000000-back"}.get(last, "")
        return "dom0", arg, vid + extra
    if method.startswith("admin.pool."):
        dest = "dom0" if rng.random() < 0.85 else dest
        if last in ("List", "ListDrivers"):
            return dest, "", ""
        payload = ""
        if last == "revisions_to_keep":
            payload = rng.choice(["0", "2", "-1", "x", ""])
        elif last == "ephemeral_volatile":
            payload = rng.choice(["True", "False", "x", ""])
        return dest, rng.choice(POOLS), payload
    if method.startswith("admin.vm.volume."):
        arg = "" if last == "List" else rng.choice(VOLUMES)
        payload = ""
        if last in ("Resize", "ImportWithSize"):
            payload = rng.choice(SIZES)
        elif last == "Revert":
            payload = rng.choice(["1700000000-back", "nosuch", ""])
        elif last == "CloneTo":
            payload = rng.choice(["not-a-token", "", "a" * 64])
        elif last in ("revisions_to_keep",):
            payload = rng.choice(["0", "2", "-1", "x", ""])
        elif last in ("rw", "ephemeral"):
            payload = rng.choice(["True", "False", "x", "", "1"])
        elif last == "Import":
            payload = rng.choice(["", "data"])
        return dest, arg, payload
    if method.startswith(("admin.vm.Create.", "admin.vm.CreateInPool.")):
        payload = rng.choice(CREATE_PAYLOADS).replace("{new}", new_name(rng))
        if "CreateInPool" in method and rng.random() < 0.5 and "pool" not in payload:
            payload += rng.choice([" pool=varlibqubes", " pool:root=varlibqubes", " pool=nosuch"])
        return ("dom0" if rng.random() < 0.85 else dest), rng.choice(TEMPLATES), payload
    if method == "admin.vm.CreateDisposable":
        return dest, rng.choice(["", "", "preload-autostart", "x"]), ""
    if method == "admin.vm.Remove":
        return rng.choice(CREATED + ["newvm", "dvm1", "dom0", "debian-12", "nosuch"]), "", ""
    if method == "admin.vm.Shutdown":
        return dest, rng.choice(SHUTDOWN_ARGS), ""
    if method.startswith("admin.backup."):
        return "dom0" if rng.random() < 0.85 else dest, rng.choice(["nosuch", "bad/name", "", "x"]), ""
    return dest, "", ""


def break_request(rng, arg, payload):
    """Invalidates one part of a request, the kind of mistake a client makes."""
    how = rng.randrange(4)
    if how == 0:
        return rng.choice(JUNK_ARGS), payload
    if how == 1:
        return arg, rng.choice(JUNK_PAYLOADS)
    if how == 2:
        return "", payload
    return arg, ""


# Calls that leave upstream's own state broken for every later write (its save then reads a
# property that has no value), so that all later replies would differ for that one reason. A
# qube's label reset is the same for labels: upstream's label.Remove then fails on that qube for
# good (a documented deviation), and the label lists of the two sides part from its first Remove.
BREAKS_UPSTREAM = {("admin.property.Reset", "default_kernel"), ("admin.vm.property.Reset", "label")}
# Requests upstream takes and then fails (the value set, an empty reply) where we refuse them: the
# two states part for the rest of the run. Upstream's default_netvm = dom0 is documented.
BREAKS_UPSTREAM_WITH = {("admin.property.Set", "default_netvm", "dom0")}
# Requests after which upstream and ours part for the rest of the run over a documented deviation,
# whatever their outcome, and the requests that would then show it: once the first has been sent,
# the second is not.
PARTING = [
    # A RemoteVM may exist: upstream's pool.Remove then fails on it where ours removes the pool,
    # and the pool lists part.
    (
        lambda method, arg, payload: method in ("admin.vm.Create.RemoteVM", "admin.vm.CreateInPool.RemoteVM"),
        lambda method: method == "admin.pool.Remove",
    ),
    # A default pool is the read-only linux-kernel pool: upstream then fails every CreateInPool,
    # whatever pool it names, where ours creates the qube, and the qube lists part.
    (
        lambda method, arg, payload: method == "admin.property.Set"
        and arg.startswith("default_pool")
        and payload == "linux-kernel",
        lambda method: method.startswith("admin.vm.CreateInPool."),
    ),
    # A volume is resized to nothing: a disposable of the qube then cannot get its disks. Upstream
    # leaves such a disposable listed, and it keeps its template in use, so the two sides part at
    # the template's next Remove.
    (
        lambda method, arg, payload: method == "admin.vm.volume.Resize" and payload == "0",
        lambda method: method == "admin.vm.CreateDisposable",
    ),
]


def bad_global_preload_max(method, dest, arg, payload):
    """dom0's preload-dispvm-max that is no number: only checked while a default_dispvm is set. Once
    stored, upstream fails every later default_dispvm change and disposable creation on it (a
    documented deviation: we read it as 0), and the qube lists part for the rest of the run."""
    return (
        method == "admin.vm.feature.Set"
        and dest in ("dom0", "{uuid:dom0}")
        and arg == "preload-dispvm-max"
        and payload.isprintable()
        and payload != ""
        and not payload.isdigit()
    )


def generate(seed, count, methods, excluded):
    rng = random.Random(seed)
    usable = [m for m in methods if m not in excluded]
    made = 0
    ruled_out = []
    while made < count:
        method = rng.choice(usable)
        dest, arg, payload = for_method(rng, method)
        if rng.random() < 0.15:
            arg, payload = break_request(rng, arg, payload)
        if (method, arg) in BREAKS_UPSTREAM or (method, arg, payload) in BREAKS_UPSTREAM_WITH:
            continue
        if any(rules_out(method) for rules_out in ruled_out):
            continue
        if bad_global_preload_max(method, dest, arg, payload):
            continue
        for starts, rules_out in PARTING:
            if rules_out not in ruled_out and starts(method, arg, payload):
                ruled_out.append(rules_out)
        made += 1
        yield method, dest, arg, payload
