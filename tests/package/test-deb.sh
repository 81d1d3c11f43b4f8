#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Debian package, end to end: builds virtsnap_*.deb from a copy of the tree, runs
# lintian (errors fail), installs it with apt-get, checks its files, runs a command against
# the installed programs, purges it and checks that nothing is left behind.
#
# Usage: sudo tests/package/test-deb.sh [COMMAND...]   (as root, on a Debian 12 machine)
#   COMMAND (or VIRTSNAP_DEB_TEST_CMD, run with bash -c) is run once the package is installed,
#   e.g. a live snapshot against the system-mode lab with /usr/sbin/virtsnapd. It must leave
#   nothing behind either (delete its snapshots: purge keeps finished ones).
# Environment:
#   VIRTSNAP_DEB_BUILD_DIR   where to build (default /var/tmp/vs-deb-build; emptied first)
#   VIRTSNAP_DEB_TEST_IGNORE extended regex of paths the leftover check ignores
#   VIRTSNAP_DEB_FROM_GIT    build a git revision (e.g. HEAD) instead of the working tree
# Every step runs even after a failure (the package is always purged); the exit status is
# non-zero if any step failed.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${VIRTSNAP_DEB_BUILD_DIR:-/var/tmp/vs-deb-build}
ignore=${VIRTSNAP_DEB_TEST_IGNORE:-}
if [ $# -gt 0 ]; then
    test_cmd=("$@")
elif [ -n "${VIRTSNAP_DEB_TEST_CMD:-}" ]; then
    test_cmd=(bash -c "$VIRTSNAP_DEB_TEST_CMD")
else
    test_cmd=()
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "test-deb: run as root (it installs and purges the package)" >&2
    exit 2
fi

failures=()
fail() {
    echo "test-deb: FAIL: $*" >&2
    failures+=("$*")
}
step() { printf '\n==== test-deb: %s\n' "$*"; }
t_start=$(date +%s.%N)
t_step=$t_start
timing() {
    local now
    now=$(date +%s.%N)
    awk -v a="$t_step" -v b="$now" -v n="$1" 'BEGIN { printf "test-deb: time: %-10s %6.1f s\n", n, b - a }'
    t_step=$now
}

# Everything a package may leave on the machine. apt's and dpkg's own records, caches and
# logs change with any install and are not ours.
listing() {
    find /etc /usr /var/lib /lib/systemd \
        \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache -o -path /var/log \) \
        -prune -o -printf '%p %y\n' 2>/dev/null | sort |
        if [ -n "$ignore" ]; then grep -Ev -- "$ignore"; else cat; fi
}

version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
upstream=${version%-*}
src="$out/virtsnap-$upstream"

# ---- build -----------------------------------------------------------------------------------
step "copy the tree to $src"
rm -rf "$out"
mkdir -p "$src"
if [ -n "${VIRTSNAP_DEB_FROM_GIT:-}" ]; then
    git -C "$here" archive "$VIRTSNAP_DEB_FROM_GIT" | tar -C "$src" -xf - ||
        fail "git archive $VIRTSNAP_DEB_FROM_GIT"
else
    # Tracked files and new ones that are not ignored: the tree as it is, not as committed.
    (cd "$here" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -C "$src" -xf - || fail "copying the tree"
fi

step "dpkg-buildpackage -us -uc -b"
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1; then
    grep -E '^[0-9]+/[0-9]+ |^(Ok|Fail|Skipped):' "$out/build.log" # the unit tests dh_auto_test ran
else
    tail -n 60 "$out/build.log"
    fail "dpkg-buildpackage (log: $out/build.log)"
fi
timing build
debs=("$out"/virtsnap_"$version"_*.deb)
changes_files=("$out"/virtsnap_"$version"_*.changes)
deb=${debs[0]}
changes=${changes_files[0]}
if [ ! -f "$deb" ] || [ ! -f "$changes" ]; then
    fail "no virtsnap_${version}_*.deb or .changes in $out"
    printf 'test-deb: %d failure(s)\n' "${#failures[@]}" >&2
    exit 1
fi
dpkg-deb -c "$deb"

step "lintian"
# Prints every tag, info included; only errors fail.
lintian --display-info --fail-on error "$changes" 2>&1 | grep -v 'running with root privileges'
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "lintian reports errors"
timing lintian

# ---- install ---------------------------------------------------------------------------------
step "install"
# dpkg's state of the package: empty or not-installed when it is gone (config-files is not).
pkg_state() { dpkg-query -W -f='${db:Status-Status}' virtsnap 2>/dev/null | grep -v '^not-installed$'; }
if [ -n "$(pkg_state)" ]; then
    echo "test-deb: virtsnap is already on this machine (a run that died?): purging it first"
    apt-get purge -y -q virtsnap >/dev/null || fail "purging an earlier virtsnap"
fi
# The system-mode lab installs the built hook at the same path for its lifetime: installing
# (and purging) the package under it would take it away.
if [ -e /etc/libvirt/hooks/qemu.d/virtsnap ] || [ -L /etc/libvirt/hooks/qemu.d/virtsnap ]; then
    fail "/etc/libvirt/hooks/qemu.d/virtsnap exists and is not the package's (a running hook lab?)"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Dependencies first, so that the listings compare the package alone. Recommends
# (libvirt-daemon-system, polkitd) are not installed: without systemd as PID 1, libvirt's
# init script would start a system libvirtd next to the lab's.
apt-get satisfy -y -q --no-install-recommends "$(dpkg-deb -f "$deb" Depends)" >/dev/null ||
    fail "installing the package's dependencies"
listing >"$out/before.list"
apt-get install -y -q --no-install-recommends "$deb" || fail "apt-get install $deb"
timing install

step "installed files"
dpkg -L virtsnap | sort >"$out/installed.list"
expected=(
    /usr/sbin/virtsnapd
    /usr/bin/virtsnapctl
    /usr/libexec/virtsnap-hook
    /etc/libvirt/hooks/qemu.d/virtsnap
    /lib/systemd/system/virtsnapd.service
    /usr/share/dbus-1/system.d/org.virtsnap.Agent1.conf
    /usr/share/dbus-1/system-services/org.virtsnap.Agent1.service
    /usr/share/dbus-1/interfaces/org.virtsnap.Agent1.xml
    /usr/share/dbus-1/interfaces/org.virtsnap.Job1.xml
    /usr/share/dbus-1/interfaces/org.virtsnap.Export1.xml
    /usr/share/polkit-1/actions/org.virtsnap.policy
    /usr/share/polkit-1/rules.d/60-virtsnap.rules
    /etc/virtsnap/virtsnapd.conf
    /usr/share/man/man1/virtsnapctl.1.gz
    /usr/share/man/man8/virtsnapd.8.gz
    /usr/share/man/man8/virtsnap-hook.8.gz
    /usr/share/bash-completion/completions/virtsnapctl
    /usr/share/doc/virtsnap/copyright
)
for f in "${expected[@]}"; do
    if ! grep -qxF "$f" "$out/installed.list"; then
        fail "the package does not ship $f"
    elif [ ! -e "$f" ]; then
        fail "$f is listed by dpkg -L but missing"
    else
        echo "ok $f"
    fi
done
[ "$(readlink /etc/libvirt/hooks/qemu.d/virtsnap)" = /usr/libexec/virtsnap-hook ] ||
    fail "/etc/libvirt/hooks/qemu.d/virtsnap does not point to /usr/libexec/virtsnap-hook"
dpkg-query -W -f='${Conffiles}\n' virtsnap | grep -q ' /etc/virtsnap/virtsnapd.conf ' ||
    fail "/etc/virtsnap/virtsnapd.conf is not a conffile"
for f in /usr/sbin/virtsnapd /usr/bin/virtsnapctl /usr/libexec/virtsnap-hook; do
    [ -x "$f" ] || fail "$f is not executable"
done

step "smoke: the installed programs"
/usr/sbin/virtsnapd --version || fail "virtsnapd --version"
virtsnapctl --help >/dev/null || fail "virtsnapctl --help"
# With no agent on the bus the hook allows, at once, and prints nothing on stdout.
hook_out=$(timeout 10 /etc/libvirt/hooks/qemu.d/virtsnap vs-deb-test prepare begin - </dev/null)
hook_rc=$?
if [ $hook_rc -ne 0 ] || [ -n "$hook_out" ]; then
    fail "the hook without an agent: exit $hook_rc, stdout '$hook_out'"
fi
timing checks

if [ ${#test_cmd[@]} -gt 0 ]; then
    step "test command: ${test_cmd[*]}"
    "${test_cmd[@]}" || fail "the test command (${test_cmd[*]}) exited $?"
    timing command
else
    echo "test-deb: no test command (argument or VIRTSNAP_DEB_TEST_CMD): installed programs only smoke-tested"
fi

# ---- purge -----------------------------------------------------------------------------------
step "purge"
apt-get purge -y -q virtsnap || fail "apt-get purge virtsnap"
[ -z "$(pkg_state)" ] || fail "dpkg still has virtsnap as '$(pkg_state)' after the purge"
for p in /proc/[0-9]*; do
    case "$(readlink "$p/exe" 2>/dev/null)" in
        /usr/sbin/virtsnapd* | /usr/libexec/virtsnap-hook*) fail "process ${p#/proc/} still runs $(readlink "$p/exe")" ;;
    esac
done
listing >"$out/after.list"
if ! diff -u "$out/before.list" "$out/after.list" >"$out/leftover.diff"; then
    cat "$out/leftover.diff"
    fail "the machine differs after install and purge (+ left behind, - removed)"
else
    echo "test-deb: nothing left behind ($(wc -l <"$out/after.list") paths compared)"
fi
timing purge

t_step=$t_start
echo
timing total
if [ ${#failures[@]} -gt 0 ]; then
    printf 'test-deb: %d failure(s):\n' "${#failures[@]}" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "test-deb: PASS ($deb)"
