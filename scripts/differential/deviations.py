"""Differences from upstream that are deliberate, or that come from how upstream runs here rather
than from what it does; each deliberate one is a row of the README's table "Upstream
compatibility: deliberate deviations". A reply pair matching one is counted under its name and
not as a mismatch.
"""

import re

# Upstream's Python reprs of a qube or a pool inside a message.
REPR_RE = re.compile(r"<\w+ at 0x[0-9a-f]+ name='[^']*'.*>|<[\w.]+ object at 0x[0-9a-f]+>")


def _repr_only(up_text, our_text):
    """The messages differ only where upstream prints a Python object's repr."""
    parts = REPR_RE.split(up_text)
    if len(parts) == 1:
        return False
    return re.fullmatch(".+".join(re.escape(part) for part in parts), our_text) is not None


def _tags_differ_only_in_gui_audio(request, up, ours):
    if request[2].startswith(("guivm-", "audiovm-")):
        return True
    if up[0] == ours[0] == "ok" and request[0] == "admin.vm.tag.List":
        strip = lambda text: [t for t in text.split("\n") if not t.startswith(("guivm-", "audiovm-"))]
        return strip(up[2]) == strip(ours[2])
    return False


def _without_zfs(drivers):
    """admin.pool.ListDrivers' body without upstream's zfs line."""
    return "".join(line for line in drivers.splitlines(keepends=True) if not line.startswith("zfs "))


def _sublist(short, long):
    """SHORT's lines are LONG's in order, with some of LONG's left out."""
    rest = iter(long.split("\n"))
    return all(line in rest for line in short.split("\n"))


def match(request, up, ours, upstream_methods, classes):
    """The name of the deviation that explains this pair of normalised replies, or None.

    CLASSES maps each qube's name to its class (upstream's admin.vm.List)."""
    method, dest = request[0], request[1]
    if method not in upstream_methods:
        return "methods only odysseyd serves (the 2017 draft's pool.volume.*, volume.Import, admin.odyssey.*)"
    if up[0] == "empty" and ours[0] == "exc":
        return "typed exception where upstream closes with an empty reply"
    if method.endswith(".Help") and up[0] == ours[0] == "ok":
        return "help texts in our own words"
    if up[0] == ours[0] == "exc" and up[1] == ours[1] and _repr_only(up[2], ours[2]):
        return "a qube or pool named by its name where upstream prints a Python repr"
    if method == "admin.pool.ListDrivers" and up[0] == ours[0] == "ok" and _without_zfs(up[2]) == ours[2]:
        return "storage driver zfs not provided"
    if method == "admin.pool.Add" and request[2] == "zfs":
        return "storage driver zfs not provided"
    if method == "admin.pool.Add" and ours[2] == "Pool parameters contain control characters":
        return "control characters refused in pool parameters (qubes.xml cannot hold them)"
    if method == "admin.pool.Add" and ours[1] == "StoragePoolException" and "reflink" in ours[2]:
        return "long advisory messages in our own words (file-reflink without reflinks)"
    if method.startswith("admin.vm.tag.") and _tags_differ_only_in_gui_audio(request, up, ours):
        return "guivm-/audiovm- tags follow a Reset of default_guivm/default_audiovm"
    if up[0] == "empty" and ours[0] == "ok" and (
        method == "admin.vm.property.GetAll"
        or (method.startswith("admin.vm.property.") and request[2] == "keyboard_layout")
    ):
        return "no endless recursion on a guivm cycle (keyboard_layout follows the guivm)"
    if (
        ".device." in method
        and method.endswith(".Attach")
        and up[2].startswith("Cannot attach ambiguous")
        and ours[2].startswith("Cannot attach unknown")
    ):
        return "attaching an unknown device says why it fails (upstream: 'Cannot attach ambiguous ... device.')"
    if (
        method == "admin.label.Remove"
        and up[0] == ours[0] == "exc"
        and up[1] == ours[1] == "QubesLabelInUseError"
        and up[2].replace(", b'", ", '", 1) == ours[2]
    ):
        return "a label made by label.Create keeps its colour as text (upstream: bytes until a reload, so its label.Get fails and its label.Remove names b'...')"
    if method == "admin.label.Get" and up[0] == "empty" and ours[0] == "ok":
        return "a label made by label.Create keeps its colour as text (upstream: bytes until a reload, so its label.Get fails and its label.Remove names b'...')"
    if up[0] == ours[0] == "ok" and method == "admin.pool.volume.List" and _sublist(ours[2], up[2]):
        return "a pool forgets the volumes of a qube whose creation failed (upstream keeps listing them)"
    if up[0] == ours[0] == "ok" and method == "admin.vm.List" and _sublist(ours[2], up[2]):
        extra = [line for line in up[2].split("\n") if line not in ours[2].split("\n")]
        if all(" class=DispVM " in line for line in extra):
            return "a disposable whose volumes cannot be created is removed again (upstream leaves it listed)"
    if method == "admin.pool.Remove" and up[0] == "empty" and ours[0] == "ok" and "RemoteVM" in classes.values():
        return "pool.Remove works while a RemoteVM exists (upstream reads the RemoteVM's volumes and fails)"
    if method.startswith("admin.vm.CreateInPool.") and up[0] == "empty" and ours[0] == "ok" and "pool" in request[3]:
        return "a creation puts a volume in the pool it names (upstream first puts each volume in its default pool, and fails when that one cannot hold it)"
    if method == "admin.pool.volume.List" and up[0] == "empty" and ours[0] == "ok" and ours[2] == "":
        return "a linux-kernel pool whose directory is missing lists no volumes (upstream fails listing it)"
    if method == "admin.label.Remove" and up[0] == "empty" and ours[0] == "ok":
        return "label.Remove works while a qube's label is reset (upstream reads every qube's label and fails on one that has none)"
    if classes.get(dest) == "RemoteVM" and method.startswith(("admin.vm.notes.", "admin.vm.firewall.")):
        return "a RemoteVM answers notes and firewall calls (upstream's RemoteVM class has neither)"
    # Upstream runs on a Mock of libvirt and without its qubesdb module: dom0's memory figures and
    # device listings that read them fail there, not in upstream proper.
    if up[0] == "empty" and ours[0] == "ok" and dest in ("dom0", "{uuid:dom0}") and (
        method == "admin.vm.CurrentState" or method.startswith("admin.vm.device.")
    ):
        return "(harness) upstream's stand-in libvirt and missing qubesdb"
    return None
