#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build the virtsnap lab guest: OUTDIR/vmlinuz and OUTDIR/initrd.img.
#
# Usage: build-guest.sh OUTDIR        (as root: the initramfs needs /dev/console)
#
# The kernel is the newest installed /boot/vmlinuz-*-cloud-amd64 (Debian's
# linux-image-cloud-amd64); the initramfs holds busybox-static, qemu-ga with the
# libraries ldd lists, the virtio (and, if modular, ext4) kernel modules with
# their dependencies, and guest-init.sh as /init.  Idempotent: does nothing when
# OUTDIR is up to date with its inputs (FORCE=1 rebuilds).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
outdir=${1:?usage: $0 OUTDIR}

die() { echo "build-guest: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (the initramfs needs a /dev/console node)"

for cmd in cpio gzip ldd find sort; do
    command -v "$cmd" >/dev/null || die "missing $cmd"
done
busybox=/bin/busybox
[ -x "$busybox" ] || die "missing $busybox (apt-get install busybox-static)"
qga=/usr/sbin/qemu-ga
[ -x "$qga" ] || die "missing $qga (apt-get install qemu-guest-agent)"

# Newest cloud kernel (version sort on the file names).
kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "missing $moddir/modules.dep"

# Modules we want, in load order; those built in (modules.builtin) or absent
# are skipped.  Dependencies come from modules.dep.
wanted="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
virtio_blk virtio_console ext4 crc32c_generic evdev button"

# Path (relative to $moddir) of a module by name, or nothing.
mod_path() {
    local name=$1 alt
    alt=$(echo "$name" | tr _ -)
    grep -E "(^|/)($name|$alt)\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -n 1 | cut -d: -f1
}
is_builtin() {
    local name=$1 alt
    alt=$(echo "$name" | tr _ -)
    grep -qE "(^|/)($name|$alt)\.ko$" "$moddir/modules.builtin" 2>/dev/null
}

declare -A seen=()
order=()
add_module() {       # depth first: dependencies before the module
    local rel=$1 dep
    [ -n "${seen[$rel]:-}" ] && return 0
    seen[$rel]=1
    for dep in $(grep -E "^$rel:" "$moddir/modules.dep" | cut -d: -f2-); do
        add_module "$dep"
    done
    order+=("$rel")
}
for m in $wanted; do
    if is_builtin "$m"; then
        continue
    fi
    rel=$(mod_path "$m")
    [ -n "$rel" ] || continue
    add_module "$rel"
done

# Libraries of qemu-ga, and its ELF interpreter.
libs=$(ldd "$qga" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | sort -u)
interp=$(readelf -l "$qga" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p' || true)
[ -n "$interp" ] && libs=$(printf '%s\n%s\n' "$libs" "$interp" | sort -u)

# Stamp of everything that goes in.
stamp=$(
    {
        cat "$0" "$here/guest-init.sh" | sha256sum
        for f in "$kernel" "$busybox" "$qga" $libs; do
            stat -L -c '%n %s %Y' "$f"
        done
        for rel in "${order[@]}"; do stat -L -c '%n %s %Y' "$moddir/$rel"; done
    } | sha256sum | cut -d' ' -f1
)
if [ "${FORCE:-0}" != 1 ] && [ -f "$outdir/vmlinuz" ] && [ -f "$outdir/initrd.img" ] &&
   [ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "build-guest: $outdir is up to date ($kver)"
    exit 0
fi

mkdir -p "$outdir"
chmod 755 "$outdir"
stage=$(mktemp -d "$outdir/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,var/run,lib/modules,etc/virtsnap,etc/acpi/PWRF}

# busybox and its applets
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list-full); do
    case "$a" in linuxrc | */busybox) continue ;; esac
    [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done

# qemu-ga and its libraries (at the paths ldd printed)
cp "$qga" "$root/usr/sbin/qemu-ga"
for l in $libs; do
    mkdir -p "$root/$(dirname "$l")"
    cp -L "$l" "$root/$l"
done

# kernel modules, flat in /lib/modules, load order in /etc/virtsnap/modules
: > "$root/etc/virtsnap/modules"
for rel in "${order[@]}"; do
    base=$(basename "$rel")
    name=${base%%.ko*}
    case "$base" in
        *.ko) cp "$moddir/$rel" "$root/lib/modules/$name.ko" ;;
        *.ko.xz) xz -dc "$moddir/$rel" > "$root/lib/modules/$name.ko" ;;
        *.ko.zst) zstd -qdc "$moddir/$rel" > "$root/lib/modules/$name.ko" ;;
        *.ko.gz) gzip -dc "$moddir/$rel" > "$root/lib/modules/$name.ko" ;;
    esac
    echo "$name" >> "$root/etc/virtsnap/modules"
done

# /init, /sbin/shutdown (what qemu-ga's guest-shutdown runs), ACPI button action
install -m 0755 "$here/guest-init.sh" "$root/init"
cat > "$root/sbin/shutdown" <<'EOF'
#!/bin/sh
# Called by qemu-ga: shutdown -h -P|-H|-r +0 "message".  /init does the rest.
mode=poweroff
for a in "$@"; do
    case "$a" in
        -r) mode=reboot ;;
        -H) mode=halt ;;
    esac
done
echo "$mode" > /run/virtsnap-stop
exit 0
EOF
chmod 0755 "$root/sbin/shutdown"
cat > "$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo poweroff > /run/virtsnap-stop
EOF
chmod 0755 "$root/etc/acpi/PWRF/00000080"
echo "root:x:0:0:root:/:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
    gzip -6 -n > "$stage/initrd.img"
cp "$kernel" "$stage/vmlinuz"
chmod 0644 "$stage/initrd.img" "$stage/vmlinuz"
mv -f "$stage/vmlinuz" "$outdir/vmlinuz"
mv -f "$stage/initrd.img" "$outdir/initrd.img"
echo "$stamp" > "$outdir/.stamp"
{
    echo "kernel=$kernel"
    echo "modules=$(tr '\n' ' ' < "$root/etc/virtsnap/modules")"
    echo "libs=$(echo $libs)"
} > "$outdir/manifest.txt"
chmod 0644 "$outdir/.stamp" "$outdir/manifest.txt"
echo "build-guest: built $outdir (kernel $kver, $(du -h "$outdir/initrd.img" | cut -f1) initrd)"
cat "$outdir/manifest.txt"
