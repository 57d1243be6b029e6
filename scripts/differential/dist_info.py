"""Writes the installed-package metadata upstream's plugin loading needs (qubes.vm, qubes.ext,
qubes.storage, ... entry points), read from the checkout's own setup.py, so that the upstream
sources run from a plain directory on PYTHONPATH.

Usage: python3 dist_info.py CORE_ADMIN_CHECKOUT OUT_DIR
"""

import ast
import os
import sys

checkout, out_dir = sys.argv[1:3]
with open(os.path.join(checkout, "setup.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())

entry_points = None
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "entry_points":
        # The value is a dict literal with one conditional list (QUBES_TEST); evaluate only it.
        entry_points = eval(  # noqa: S307
            compile(ast.Expression(node.value), "setup.py", "eval"), {"os": os}
        )
if not isinstance(entry_points, dict):
    sys.exit(f"no entry_points in {checkout}/setup.py")

with open(os.path.join(checkout, "version"), encoding="utf-8") as f:
    version = f.read().strip()
info = os.path.join(out_dir, f"qubes-{version}.dist-info")
os.makedirs(info, exist_ok=True)
with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as f:
    f.write(f"Metadata-Version: 2.1\nName: qubes\nVersion: {version}\n")
with open(os.path.join(info, "entry_points.txt"), "w", encoding="utf-8") as f:
    for group, entries in entry_points.items():
        f.write(f"[{group}]\n")
        for entry in entries:
            name, target = (part.strip() for part in entry.split("=", 1))
            f.write(f"{name} = {target}\n")
        f.write("\n")
