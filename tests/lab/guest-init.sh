#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# /init of the virtsnap lab guest (PID 1 of an initramfs; busybox sh).
#
# - loads the virtio modules listed in /etc/virtsnap/modules (in order);
# - starts qemu-ga on the virtio port named org.qemu.guest_agent.0, if any;
# - mounts every virtio disk /dev/vda, /dev/vdb, ... (whole-disk ext4) at
#   /data0, /data1, ...;
# - appends numbered records "1\n", "2\n", ... to /dataN/records, the same
#   number to every disk in one loop iteration (disk0 first), continuing from
#   the last complete record found, with a sync every few records;
# - prints VIRTSNAP-GUEST-READY on the console once all of that runs.
#
# Kernel command line knobs: virtsnap.delay=USEC (pause per record, default
# 10000), virtsnap.sync=N (sync every N records, default 10, 0 = never).

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /var/run /run /tmp /dev/pts /var/log
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

log() { echo "virtsnap-guest: $*" >&2; }

DELAY=10000
SYNC=10
for w in $(cat /proc/cmdline); do
    case "$w" in
        virtsnap.delay=*) DELAY=${w#*=} ;;
        virtsnap.sync=*) SYNC=${w#*=} ;;
    esac
done

while read -r m; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done < /etc/virtsnap/modules

# How many virtio devices of one type (0x0002 block, 0x0003 console) exist.
count_virtio() {
    c=0
    for d in /sys/bus/virtio/devices/*; do
        [ -r "$d/device" ] || continue
        [ "$(cat "$d/device")" = "$1" ] && c=$((c + 1))
    done
    echo $c
}

# --- disks -----------------------------------------------------------------
nblk=$(count_virtio 0x0002)
i=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$nblk" ] && [ $i -lt 200 ]; do
    usleep 20000
    i=$((i + 1))
done

DISKS=""
n=0
for dev in $(ls /sys/block 2>/dev/null | grep '^vd'); do
    i=0
    while [ ! -b "/dev/$dev" ] && [ $i -lt 100 ]; do usleep 20000; i=$((i + 1)); done
    mkdir -p "/data$n"
    if mount -t ext4 "/dev/$dev" "/data$n"; then
        DISKS="$DISKS /data$n"
        log "mounted /dev/$dev on /data$n"
    else
        log "cannot mount /dev/$dev"
    fi
    n=$((n + 1))
done

# --- guest agent -----------------------------------------------------------
PORT=""
if [ "$(count_virtio 0x0003)" -gt 0 ]; then
    i=0
    while [ $i -lt 250 ]; do
        for p in /sys/class/virtio-ports/*; do
            [ "$(cat "$p/name" 2>/dev/null)" = "org.qemu.guest_agent.0" ] && PORT="/dev/${p##*/}"
        done
        [ -n "$PORT" ] && [ -c "$PORT" ] && break
        PORT=""
        usleep 20000
        i=$((i + 1))
    done
fi
if [ -n "$PORT" ]; then
    (
        while :; do
            qemu-ga -m virtio-serial -p "$PORT" -t /var/run
            log "qemu-ga exited ($?), restarting"
            sleep 1
        done
    ) &
    log "qemu-ga started on $PORT"
else
    log "no guest agent channel"
fi

# ACPI power button -> clean power-off (for `virsh shutdown --mode acpi`).
if [ -e /dev/input ] || ls /sys/class/input/ >/dev/null 2>&1; then
    acpid -c /etc/acpi -a /etc/acpid.conf -l /dev/null >/dev/null 2>&1 || true
fi

# --- records ---------------------------------------------------------------
# Last complete record of one disk; an incomplete trailing line is cut off.
last_record() {
    f="$1/records"
    if [ ! -s "$f" ]; then
        echo 0
        return
    fi
    if [ "$(tail -c 1 "$f" | wc -l)" -eq 0 ]; then
        size=$(stat -c %s "$f")
        part=$(tail -n 1 "$f" | wc -c)
        truncate -s $((size - part)) "$f"
        log "cut an incomplete last record in $f"
        [ -s "$f" ] || { echo 0; return; }
    fi
    l=$(tail -n 1 "$f")
    case "$l" in
        '' | *[!0-9]*)
            log "last line of $f is not a number; continuing from its line count"
            wc -l < "$f"
            ;;
        *) echo "$l" ;;
    esac
}

start=0
for d in $DISKS; do
    l=$(last_record "$d")
    eval "last_$(basename "$d")=$l"
    [ "$l" -gt "$start" ] && start=$l
done
# Bring every disk up to the same counter, so that all disks then write the
# same number in each iteration.
for d in $DISKS; do
    eval "l=\$last_$(basename "$d")"
    while [ "$l" -lt "$start" ]; do
        l=$((l + 1))
        echo "$l" >> "$d/records"
    done
done
sync

log "records continue after $start (delay ${DELAY}us, sync every $SYNC)"
echo "VIRTSNAP-GUEST-READY disks=$(echo $DISKS | wc -w) agent=${PORT:-none} start=$start"

stop_guest() {
    mode=$(cat /run/virtsnap-stop 2>/dev/null)
    log "$mode requested"
    sync
    for d in $DISKS; do
        umount "$d" 2>/dev/null || mount -o remount,ro "$d" 2>/dev/null
    done
    sync
    echo "VIRTSNAP-GUEST-STOPPING $mode"
    case "$mode" in
        reboot) reboot -f ;;
        halt) halt -f ;;
        *) poweroff -f ;;
    esac
    while :; do sleep 3600; done
}

n=$start
if [ -z "$DISKS" ]; then
    while :; do
        [ -e /run/virtsnap-stop ] && stop_guest
        usleep 200000
    done
fi
while :; do
    [ -e /run/virtsnap-stop ] && stop_guest
    n=$((n + 1))
    for d in $DISKS; do
        echo "$n" >> "$d/records"
    done
    if [ "$SYNC" -gt 0 ] && [ $((n % SYNC)) -eq 0 ]; then
        sync
    fi
    [ "$DELAY" -gt 0 ] && usleep "$DELAY"
done
