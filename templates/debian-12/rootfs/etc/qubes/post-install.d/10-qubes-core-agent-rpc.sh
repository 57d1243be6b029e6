#!/bin/sh
# supported-rpc.SERVICE for every service this qube answers (upstream's script of this name).
for srv in /etc/qubes-rpc/*; do
    if [ -f "$srv" ] && [ -x "$srv" ]; then
        name="${srv##*/}"
        qvm-features-request "supported-rpc.${name%%+*}=1"
    fi
done
# The agent answers this one itself when no file provides it (agent/src/builtin-services.ts).
qvm-features-request "supported-rpc.qubes.WaitForRunningSystem=1"
