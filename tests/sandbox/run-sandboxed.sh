#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs integration tests with virtsnapd under the seccomp filter of virtsnapd.service
# (vs-seccomp-run, through the conftest's VIRTSNAP_AGENT_WRAPPER): a live snapshot (direct,
# raw and compressed: qemu-img runs under the filter too), a cold one of a running guest and
# of a block device, RBD snapshots (librados in the agent's process), and exports of a file
# and of an RBD snapshot (qemu-nbd runs under the filter too).
# Usage (as root, from anywhere):
#   run-sandboxed.sh BUILD_DIR STAGE_DIR [PYTEST_ARGS...]
# BUILD_DIR: a NON-sanitized build (ASan/UBSan runtimes make calls of their own) with
#   tests/sandbox/vs-seccomp-run and packaging/virtsnapd.service; STAGE_DIR: what
#   scripts/stage made from it. The lab's environment is passed on (VIRTSNAP_LAB_ASSETS,
#   default STAGE_DIR/assets; VIRTSNAP_LAB_LOOPDEV, made here if unset; VIRTSNAP_LAB_MODE:
#   session runs pytest as the lab user, system as root).
# VS_SANDBOX_TESTS: the pytest -k expression (default below). VS_SANDBOX_MIRROR=1: a call
# outside the allow-list fails with the unit's SystemCallErrorNumber= instead of killing the
# agent (the default kills, so that no such call can go unnoticed behind an EPERM).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '6,16s/^# \{0,1\}//p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
stage=$(cd "$2" && pwd)
shift 2

if ldd "$stage/build/agent/virtsnapd" | grep -Eq 'lib(a|ub|l|t)san'; then
    echo "run-sandboxed.sh: $stage/build/agent/virtsnapd is a sanitized build; use one" \
        "configured with -Db_sanitize=none" >&2
    exit 2
fi

sandbox=$stage/sandbox
mkdir -p "$sandbox"
cp "$build/tests/sandbox/vs-seccomp-run" "$build/packaging/virtsnapd.service" "$sandbox/"
strict=--strict
[ "${VS_SANDBOX_MIRROR:-0}" = 1 ] && strict=
wrapper=$("$here/wrapper-args.sh" $strict "$sandbox/virtsnapd.service" \
    "$sandbox/vs-seccomp-run" "$sandbox")
chmod -R a+rX "$sandbox"
echo "VIRTSNAP_AGENT_WRAPPER=$wrapper"

tests=${VS_SANDBOX_TESTS:-test_live_snapshot_of_writing_guest or test_direct_copy_and_formats \
or test_sigterm_undoes_a_running_job or test_cold_snapshot_of_running_guest \
or test_auto_goes_cold_for_a_block_device or test_rbd_snapshot_of_writing_guest \
or test_rbd_flatten or test_export_serves_the_snapshot_read_only or test_mount_read_umount \
or test_export_of_an_rbd_snapshot}

loopdev=${VIRTSNAP_LAB_LOOPDEV:-}
if [ -z "$loopdev" ]; then
    truncate -s 64M "$sandbox/loop.img"
    mkfs.ext4 -q -F -L blockdev "$sandbox/loop.img"
    loopdev=$(losetup --find --show "$sandbox/loop.img")
    trap 'losetup -d "$loopdev" 2>/dev/null || true' EXIT
fi
mode=${VIRTSNAP_LAB_MODE:-session}
env=(VIRTSNAP_AGENT_WRAPPER="$wrapper" VIRTSNAP_LAB_MODE="$mode"
    VIRTSNAP_LAB_ASSETS="${VIRTSNAP_LAB_ASSETS:-$stage/assets}" VIRTSNAP_LAB_LOOPDEV="$loopdev"
    VIRTSNAP_BUILD_DIR="$stage/build")
pytest=(/usr/bin/python3 -m pytest -p no:cacheprovider -v -rs "$stage/tests/integration"
    -k "$tests" "$@")

cd "$stage"
if [ "$mode" = session ]; then
    owner=$(stat -c %U "$loopdev")
    chown virtsnaplab "$loopdev" 2>/dev/null || true
    status=0
    tests/lab/as-user.sh env "${env[@]}" "${pytest[@]}" || status=$?
    chown "$owner" "$loopdev"
    exit $status
fi
env "${env[@]}" "${pytest[@]}"
