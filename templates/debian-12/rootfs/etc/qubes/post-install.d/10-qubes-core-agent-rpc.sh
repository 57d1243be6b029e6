#!/bin/sh
# supported-rpc.SERVICE for every service this qube answers (upstream's script of this name), all in
# one qvm-features-request: each run of it is a node start, tens of seconds in a nested Xen qube.
set --
for srv in /etc/qubes-rpc/*; do
    if [ -f "$srv" ] && [ -x "$srv" ]; then
        name="${srv##*/}"
        set -- "$@" "supported-rpc.${name%%+*}=1"
    fi
done
# The agent answers this one itself when no file provides it (agent/src/builtin-services.ts).
exec qvm-features-request "$@" "supported-rpc.qubes.WaitForRunningSystem=1"
