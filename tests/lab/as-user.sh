#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run a command as the unprivileged lab user (the session libvirtd of the lab
# must not run as root: as root it would be the system daemon).
#
# Usage: as-user.sh CMD [ARGS...]
#
# As root: makes sure the system user "virtsnaplab" exists (and is in group
# kvm, if there is one), then runs CMD as that user in the current directory
# with a clean environment: HOME, USER, LOGNAME, SHELL, a standard PATH, and
# the caller's VIRTSNAP_*, CI, TERM, LANG, LC_ALL, TMPDIR, PYTEST_ADDOPTS.
# As any other user: just runs CMD.
set -eu

[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

if [ "$(id -u)" -ne 0 ]; then
    exec "$@"
fi

LAB_USER=${VIRTSNAP_LAB_USER:-virtsnaplab}

if ! id -u "$LAB_USER" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "/var/lib/$LAB_USER" \
        --shell /bin/sh --comment "virtsnap test lab" "$LAB_USER"
fi
if getent group kvm >/dev/null 2>&1 && ! id -nG "$LAB_USER" | tr ' ' '\n' | grep -qx kvm; then
    usermod -a -G kvm "$LAB_USER"
fi

home=$(getent passwd "$LAB_USER" | cut -d: -f6)
[ -d "$home" ] || { mkdir -p "$home"; chown "$LAB_USER:" "$home"; }

if ! setpriv --reuid="$LAB_USER" --regid="$LAB_USER" --init-groups test -r . 2>/dev/null; then
    echo "as-user.sh: warning: $LAB_USER cannot read the current directory $(pwd)" >&2
fi

# Environment to keep (values may hold spaces).
keep=(
    HOME="$home" USER="$LAB_USER" LOGNAME="$LAB_USER" SHELL=/bin/sh
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
)
for name in $(compgen -e); do
    case "$name" in
        VIRTSNAP_* | CI | TERM | LANG | LC_ALL | TMPDIR | PYTEST_ADDOPTS)
            keep+=("$name=${!name}") ;;
    esac
done
exec setpriv --reuid="$LAB_USER" --regid="$LAB_USER" --init-groups env -i "${keep[@]}" "$@"
