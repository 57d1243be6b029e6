"""bench:api's launcher of upstream's real QubesAdminAPI handler (qubes-core-admin, unmodified,
from the checkout on PYTHONPATH), with the same qubes odysseyd gets: a TemplateVM `tpl` and AppVMs
vm0..vm<N-1> on it. Our own launcher, like scripts/differential/upstream_server.py (reference
§8.1): no Xen, no root, a Mock for libvirt as upstream's API tests use. The qubes are added in
process and saved once, because N admin.vm.Create calls would rewrite qubes.xml N times.

Usage: python3 upstream-server.py BASE_DIR SOCKET N
"""

import asyncio
import os
import sys
import unittest.mock

base_dir, sock_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

import libvirt  # noqa: E402

import qubes  # noqa: E402
import qubes.api  # noqa: E402
import qubes.api.admin  # noqa: E402
import qubes.app  # noqa: E402
import qubes.config  # noqa: E402
import qubes.vm.appvm  # noqa: E402
import qubes.vm.templatevm  # noqa: E402

qubes.config.qubes_base_dir = base_dir
qubes.config.system_path["qubes_base_dir"] = base_dir
qubes.config.defaults["pool_configs"]["varlibqubes"]["dir_path"] = base_dir
qubes.config.defaults["pool_configs"]["linux-kernel"]["dir_path"] = os.path.join(base_dir, "vm-kernels")
os.makedirs(os.path.join(base_dir, "vm-kernels", "6.6.1"), exist_ok=True)
open(os.path.join(base_dir, "vm-kernels", "6.6.1", "vmlinuz"), "w").close()
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
app.load_initial_values()
loop.run_until_complete(app.setup_pools())
app.default_kernel = "6.6.1"
tpl = app.add_new_vm(qubes.vm.templatevm.TemplateVM, name="tpl", label="black")
for i in range(count):
    app.add_new_vm(qubes.vm.appvm.AppVM, name=f"vm{i}", label="red", template=tpl)
app.save()

qubes.api.admin.QubesAdminAPI.SOCKNAME = sock_path
loop.run_until_complete(qubes.api.create_servers(qubes.api.admin.QubesAdminAPI, app=app))
print("upstream qubesd ready", flush=True)
loop.run_forever()
