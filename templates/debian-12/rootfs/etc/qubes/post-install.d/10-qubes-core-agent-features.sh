#!/bin/sh
# What the agent provides (upstream's script of this name): qrexec, qubes.VMExec, and the
# distribution from os-release. dom0 takes these from a template or standalone qube only.
. /etc/os-release
qvm-features-request qrexec=1 vmexec=1 os=Linux os-distribution="$ID" os-version="$VERSION_ID" \
    os-distribution-like="${ID_LIKE:-}"
