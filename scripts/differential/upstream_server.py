"""Serves upstream's real QubesAdminAPI handler (qubes-core-admin, unmodified) on a custom socket.

Our own launcher, following admin-api-reference §8.1: no Xen, no libvirt, no root. It imports the
upstream sources from PYTHONPATH (a local checkout that is never copied into this repository),
points every path at a scratch directory, and stands a Mock in for the libvirt connection exactly as
upstream's own API tests do, so that every qube reports itself halted. The differential test
(scripts/upstream-differential.sh) and the API benchmark (bench/api.js) both serve upstream with it.

Usage: python3 upstream_server.py BASE_DIR SOCKET [--methods-json FILE] [--appvms N]
  BASE_DIR        scratch directory (qubes.xml, pools, kernels)
  SOCKET          the Admin API socket to create
  --methods-json  written with the names of every method upstream serves (for the generator)
  --appvms N      also a TemplateVM `tpl` and AppVMs vm0..vm<N-1> on it, with kernel 6.6.1 the
                  default; added in process and saved once, because N admin.vm.Create calls would
                  rewrite qubes.xml N times
"""

import argparse
import asyncio
import json
import os
import unittest.mock

parser = argparse.ArgumentParser()
parser.add_argument("base_dir")
parser.add_argument("socket")
parser.add_argument("--methods-json")
parser.add_argument("--appvms", type=int)
args = parser.parse_args()
base_dir = args.base_dir

import libvirt  # noqa: E402

import qubes  # noqa: E402
import qubes.api  # noqa: E402
import qubes.api.admin  # noqa: E402
import qubes.app  # noqa: E402
import qubes.config  # noqa: E402
import qubes.vm.appvm  # noqa: E402
import qubes.vm.templatevm  # noqa: E402

# Every path below the scratch directory, as upstream's AdminAPITestCase does (kernels too: both
# daemons find the same installed kernel there, so upstream's kernel check runs unchanged).
qubes.config.qubes_base_dir = base_dir
qubes.config.system_path["qubes_base_dir"] = base_dir
qubes.config.defaults["pool_configs"]["varlibqubes"]["dir_path"] = base_dir
qubes.config.defaults["pool_configs"]["linux-kernel"]["dir_path"] = os.path.join(
    base_dir, "vm-kernels"
)
# The socket's group "qubes" does not exist here.
qubes.api.shutil.chown = lambda *args, **kwargs: None

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)

app = qubes.Qubes(os.path.join(base_dir, "qubes.xml"), load=False, offline_mode=True)
app.vmm = unittest.mock.Mock(spec=qubes.app.VMMConnection)
app.vmm.configure_mock(
    **{
        "offline_mode": True,
        "libvirt_conn.lookupByUUID.return_value.isActive.return_value": False,
        "libvirt_conn.lookupByUUID.return_value.state.return_value": [libvirt.VIR_DOMAIN_SHUTOFF],
    }
)
# Offline, upstream's host has 2**64 - 1 KiB of memory, which a Linux qube's maxmem default (ten
# times its memory, within half the host's) then shows; odysseyd reads this machine's, as upstream
# does through libvirt (whole MiB).
HOST_MEMORY_KIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 1024
qubes.app.QubesHost.memory_total = property(lambda self: HOST_MEMORY_KIB)
app.load_initial_values()
loop.run_until_complete(app.setup_pools())
if args.appvms is not None:
    kernel_dir = os.path.join(base_dir, "vm-kernels", "6.6.1")
    os.makedirs(kernel_dir, exist_ok=True)
    open(os.path.join(kernel_dir, "vmlinuz"), "a").close()
    app.default_kernel = "6.6.1"
    tpl = app.add_new_vm(qubes.vm.templatevm.TemplateVM, name="tpl", label="black")
    for i in range(args.appvms):
        app.add_new_vm(qubes.vm.appvm.AppVM, name=f"vm{i}", label="red", template=tpl)
app.save()

if args.methods_json:
    with open(args.methods_json, "w", encoding="utf-8") as out:
        json.dump(sorted({name for _, name, _ in qubes.api.admin.QubesAdminAPI.list_methods()}), out)

qubes.api.admin.QubesAdminAPI.SOCKNAME = args.socket
loop.run_until_complete(qubes.api.create_servers(qubes.api.admin.QubesAdminAPI, app=app))
print("upstream qubesd ready", flush=True)
loop.run_forever()
