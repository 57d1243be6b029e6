"""Serves upstream's real QubesAdminAPI handler (qubes-core-admin, unmodified) on a custom socket.

Our own launcher, following admin-api-reference §8.1: no Xen, no libvirt, no root. It imports the
upstream sources from PYTHONPATH (a local checkout that is never copied into this repository),
points every path at a scratch directory, and stands a Mock in for the libvirt connection exactly as
upstream's own API tests do, so that every qube reports itself halted.

Usage: python3 upstream_server.py BASE_DIR SOCKET METHODS_JSON
  BASE_DIR      scratch directory (qubes.xml, pools, kernels)
  SOCKET        the Admin API socket to create
  METHODS_JSON  written with the names of every method upstream serves (for the generator)
"""

import asyncio
import json
import os
import sys
import unittest.mock

base_dir, sock_path, methods_path = sys.argv[1:4]

import libvirt  # noqa: E402

import qubes  # noqa: E402
import qubes.api  # noqa: E402
import qubes.api.admin  # noqa: E402
import qubes.app  # noqa: E402
import qubes.config  # noqa: E402

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
app.load_initial_values()
loop.run_until_complete(app.setup_pools())
app.save()

with open(methods_path, "w", encoding="utf-8") as out:
    json.dump(sorted({name for _, name, _ in qubes.api.admin.QubesAdminAPI.list_methods()}), out)

qubes.api.admin.QubesAdminAPI.SOCKNAME = sock_path
servers = loop.run_until_complete(qubes.api.create_servers(qubes.api.admin.QubesAdminAPI, app=app))
print("upstream qubesd ready", flush=True)
loop.run_forever()
