#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks virtsnapd.service offline (no systemd as PID 1 needed): installs BUILD_DIR into a
# temporary root next to a copy of the host's units, runs `systemd-analyze verify` on the
# installed unit (any message fails: verify exits 0 on mere warnings) and prints
# `systemd-analyze security --offline=yes`, failing if its exposure exceeds
# VS_SECURITY_MAX (default 3.0; README.md, "Hardening", gives the measured score).
# Usage: check-unit.sh BUILD_DIR        (exit 0: clean; 1: verify or threshold failed)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
max=${VS_SECURITY_MAX:-3.0}
root=$(mktemp -d /tmp/vs-check-unit.XXXXXX)
trap 'rm -rf "$root"' EXIT

DESTDIR=$root meson install -C "$build" --no-rebuild --quiet >/dev/null
unit=$(cd "$root" && find . -path '*/systemd/system/virtsnapd.service' | head -n 1)
[ -n "$unit" ] || { echo "check-unit.sh: meson install put no virtsnapd.service in $root" >&2; exit 1; }
unit=${unit#.}
# verify resolves dependencies (sysinit.target, dbus.socket, ...) inside --root: give it the
# host's units, under the directory this systemd reads, without shadowing ours.
hostunits=/usr/lib/systemd/system
mkdir -p "$root$hostunits"
cp -an "$hostunits/." "$root$hostunits/"

# The man page (Documentation=man:virtsnapd(8)) is checked when the build installs it.
man=no
if compgen -G "$root/usr/share/man/man8/virtsnapd.8*" >/dev/null; then
    man=yes
    export MANPATH=$root/usr/share/man
fi

echo "== systemd-analyze verify --man=$man --root=<DESTDIR> $unit"
status=0
out=$(systemd-analyze verify --man=$man --root="$root" "$unit" 2>&1) || status=$?
if [ $status != 0 ] || [ -n "$out" ]; then
    echo "$out"
    echo "check-unit.sh: systemd-analyze verify is not clean (exit $status)" >&2
    exit 1
fi
echo "clean"
[ $man = yes ] || echo "note: no virtsnapd.8 installed by this build: man:virtsnapd(8) not checked"

echo "== systemd-analyze security --offline=yes $unit"
report=$(systemd-analyze security --offline=yes --root="$root" "$unit" 2>&1) || true
echo "$report" | grep '^✗' || true
score=$(echo "$report" | sed -n 's/.*Overall exposure level for virtsnapd.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { echo "$report"; echo "check-unit.sh: no score" >&2; exit 1; }
echo "exposure: $score (at most $max accepted)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' ||
    { echo "check-unit.sh: exposure $score > $max" >&2; exit 1; }
