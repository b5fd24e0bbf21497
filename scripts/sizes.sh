#!/usr/bin/env bash
# Prints the sizes the foundation issue sets targets for, with the ratio to each target.
set -euo pipefail
init=$1 nomod=$2 qemu=$3
row() { # name bytes [target]
    awk -v n="$1" -v b="$2" -v t="${3:-0}" 'BEGIN {
        if (t > 0) printf "%-28s %10d B %8.2f MiB   target %5.2f MiB   ratio %.2f\n", n, b, b/1048576, t/1048576, b/t
        else       printf "%-28s %10d B %8.2f MiB   (no target)\n", n, b, b/1048576 }'
}
printf '%-28s %12s %12s\n' artifact size ""
row "ze-init (stripped)" "$(stat -c %s "$init")"
row "initrd, no modules" "$(stat -c %s "$nomod")" $((1536 * 1024))
row "initrd, qemu profile" "$(stat -c %s "$qemu")" $((3 * 1024 * 1024))
