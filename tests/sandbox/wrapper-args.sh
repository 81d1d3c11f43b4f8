#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Turns the seccomp part of a systemd unit (SystemCallFilter=, SystemCallErrorNumber=,
# SystemCallArchitectures=, RestrictAddressFamilies=, MemoryDenyWriteExecute=, ...) into a
# vs-seccomp-run command prefix, and prints it on one line (space-separated argv).
# Usage: wrapper-args.sh [--strict] UNIT_FILE VS_SECCOMP_RUN WORK_DIR
#   --strict   a call outside the allow-list kills the process (SIGSYS) even if the unit says
#              SystemCallErrorNumber=: a test then sees every such call, not a silent EPERM.
# Writes WORK_DIR/syscalls: the allow-list with the groups expanded (systemd-analyze
# syscall-filter), minus the unit's SystemCallFilter=~ lines.
set -euo pipefail

strict=0
if [ "${1:-}" = --strict ]; then
    strict=1
    shift
fi
[ $# -eq 3 ] || { sed -n '4,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }
unit=$1 wrapper=$2 work=$3
mkdir -p "$work"

# All values of KEY in the unit, one per line (later lines add to earlier ones).
values() { sed -n "s/^[[:space:]]*$1=//p" "$unit"; }
last_value() { values "$1" | tail -n 1; }

# One syscall or @group -> syscall names, nested groups expanded.
expand() {
    local name
    for name in "$@"; do
        case $name in
        @*) expand $(systemd-analyze syscall-filter "$name" |
                awk 'NR > 1 && $1 !~ /^#/ && NF { print $1 }') ;;
        *) echo "$name" ;;
        esac
    done
}

allow=() deny=()
while read -r line; do
    [ -n "$line" ] || continue
    case $line in
    ~*) deny+=(${line#\~}) ;;
    *) allow+=($line) ;;
    esac
done < <(values SystemCallFilter)
if [ ${#allow[@]} -eq 0 ]; then
    echo "wrapper-args.sh: $unit has no SystemCallFilter= allow-list" >&2
    exit 1
fi
expand "${allow[@]}" | sort -u > "$work/allow"
if [ ${#deny[@]} -gt 0 ]; then expand "${deny[@]}"; fi | sort -u > "$work/deny"
comm -23 "$work/allow" "$work/deny" > "$work/syscalls"

args=("$wrapper" --syscalls "$work/syscalls")
if [ "$(last_value SystemCallArchitectures)" != native ]; then
    echo "wrapper-args.sh: only SystemCallArchitectures=native is mirrored" >&2
    exit 1
fi
err=$(last_value SystemCallErrorNumber)
if [ -n "$err" ] && [ $strict = 0 ]; then args+=(--errno "$err"); fi
families=$(values RestrictAddressFamilies | tr -s ' \n' ',' | sed 's/,$//')
[ -z "$families" ] || args+=(--address-families "$families")
is_yes() { case $(last_value "$1") in yes | true | on | 1) return 0 ;; esac; return 1; }
if is_yes MemoryDenyWriteExecute; then args+=(--deny-write-execute); fi
if is_yes RestrictNamespaces; then args+=(--restrict-namespaces); fi
if is_yes RestrictRealtime; then args+=(--restrict-realtime); fi
if is_yes RestrictSUIDSGID; then args+=(--restrict-suid-sgid); fi
if is_yes LockPersonality; then args+=(--lock-personality); fi
args+=(--)
echo "${args[*]}"
