#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run the virtsnap benchmark (tests/bench/bench.py) on the lab, as the lab user.
#
# Usage (as root, from anywhere): tests/bench/run.sh [bench.py options]
#   e.g. tests/bench/run.sh --sizes 16,256 --reps 3 --json /tmp/bench.json
#
# Builds the guest assets if needed (tests/lab/build-guest.sh; needs root) into
# $VIRTSNAP_LAB_ASSETS (default /var/tmp/vs-assets), builds the agent if
# virtsnapd is missing (ninja -C $VIRTSNAP_BUILD_DIR, default <repo>/build),
# then runs bench.py with Debian's /usr/bin/python3 as the user virtsnaplab.
# Files named by --json / --agent-log must be writable by that user (e.g. /tmp).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export VIRTSNAP_LAB_ASSETS=${VIRTSNAP_LAB_ASSETS:-/var/tmp/vs-assets}
build=${VIRTSNAP_BUILD_DIR:-$repo/build}

if [ "$(id -u)" -eq 0 ]; then
    "$repo/tests/lab/build-guest.sh" "$VIRTSNAP_LAB_ASSETS" >&2   # skips if up to date
elif [ ! -r "$VIRTSNAP_LAB_ASSETS/vmlinuz" ] || [ ! -r "$VIRTSNAP_LAB_ASSETS/initrd.img" ]; then
    echo "run.sh: no guest assets in $VIRTSNAP_LAB_ASSETS; run as root to build them" >&2
    exit 1
fi
if [ ! -x "$build/agent/virtsnapd" ]; then
    ninja -C "$build" >&2
fi
/usr/bin/python3 -c 'import libvirt, gi' 2>/dev/null || {
    echo "run.sh: /usr/bin/python3 lacks libvirt or gi: apt-get install -y $(tr '\n' ' ' < "$here/PACKAGES")" >&2
    exit 1
}

cd "$repo"
exec "$repo/tests/lab/as-user.sh" /usr/bin/python3 "$here/bench.py" "$@"
