#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks vs-seccomp-run against the built unit: a call outside @system-service is killed
# (or fails with the unit's errno), the unit's argument filters refuse what they should, and
# ordinary programs and (in a non-sanitized build) virtsnapd --version run normally.
# Usage: test-wrapper.sh VS_SECCOMP_RUN UNIT_FILE [VIRTSNAPD]   (TAP output)
set -uo pipefail
wrapper=$1 unit=$2 agent=${3:-}
here=$(dirname "$0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0 failed=0

ok() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}

strict=$("$here/wrapper-args.sh" --strict "$unit" "$wrapper" "$work/strict") || exit 1
mirror=$("$here/wrapper-args.sh" "$unit" "$wrapper" "$work/mirror") || exit 1

grep -qx openat "$work/strict/syscalls" && ! grep -qx swapoff "$work/strict/syscalls"
ok $? "the expanded @system-service list has openat and not swapoff"

# swapoff(2) is in @swap, outside @system-service; on a missing file it is harmless anyway.
$strict /sbin/swapoff /nonexistent-vs-swap 2>/dev/null
ok $([ $? = $((128 + 31)) ] && echo 0 || echo 1) "strict: a call outside the list is SIGSYS"

err=$(sed -n 's/^SystemCallErrorNumber=//p' "$unit")
out=$($mirror /sbin/swapoff /nonexistent-vs-swap 2>&1)
rc=$?
if [ "$err" = EPERM ]; then
    [ $rc != $((128 + 31)) ] && grep -q 'Not superuser' <<<"$out"
    ok $? "as the unit says: a call outside the list fails with EPERM ($out)"
else
    ok $([ $rc = $((128 + 31)) ] && echo 0 || echo 1) "as the unit says: SIGSYS"
fi

/sbin/swapoff /nonexistent-vs-swap >/dev/null 2>&1
ok $([ $? != $((128 + 31)) ] && echo 0 || echo 1) "without the wrapper swapoff is not killed"

out=$(VS_WORK=$work $strict /usr/bin/python3 - <<'PY' 2>&1
import errno, mmap, os, socket
def refused(what, fn, code):
    try:
        fn()
    except OSError as e:
        print(what, 'refused' if e.errno == code else f'failed {e.errno}')
    else:
        print(what, 'allowed')
refused('netlink', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW), errno.EAFNOSUPPORT)
refused('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW), errno.EAFNOSUPPORT)
refused('inet6', lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close(), 0)
refused('unix', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close(), 0)
refused('wx', lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC), errno.EPERM)
refused('rw', lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE), 0)
refused('realtime', lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)), errno.EPERM)
d = os.environ['VS_WORK']
refused('setgid-dir', lambda: os.mkdir(d + '/sgid', 0o2755), errno.EPERM)
refused('plain-dir', lambda: os.mkdir(d + '/plain', 0o711), 0)
PY
)
echo "$out" | sed 's/^/# /'
for want in 'netlink refused' 'packet refused' 'inet6 allowed' 'unix allowed' 'wx refused' \
    'rw allowed' 'realtime refused' 'setgid-dir refused' 'plain-dir allowed'; do
    grep -qx "$want" <<<"$out"
    ok $? "python3 under the unit's filter: $want"
done

if [ -n "$agent" ]; then
    out=$($strict "$agent" --version 2>&1)
    ok $? "virtsnapd --version under the strict filter ($out)"
fi

echo "1..$n"
exit $failed
