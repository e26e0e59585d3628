#!/bin/sh
# PID 1 of a fresh sandbox until it execs systemd (see systemd.py).
#
#   sandbox-init.sh WORKDIR UNITDIR TARGET LOG_TARGET [WRITABLE_PATH...]
#
# It runs inside private mount, PID, UTS, IPC, network and cgroup namespaces, so every
# mount below is invisible to the host. Remounts always use "remount,bind": a plain
# remount would change the host's filesystem itself.
set -eu

work=$1
units=$2
target=$3
log_target=$4
shift 4

# Without a private utab, mount(8) would create /run/mount on the host.
export LIBMOUNT_UTAB="$work/utab"

# The folders that must stay visible are parked in a scratch tmpfs before the
# private tmpfs mounts below hide them (pytest's tmp_path lives in /tmp, and so may
# the code under test: SANDBOX_READONLY_PATHS, one per line, kept read-only).
mount -t tmpfs -o mode=700 sandbox-park /mnt
readonly_paths=${SANDBOX_READONLY_PATHS:-}
i=0
for path in $readonly_paths; do
    mkdir "/mnt/ro$i"
    mount --bind "$path" "/mnt/ro$i"
    i=$((i + 1))
done
i=0
for path in "$work" "$@"; do
    mkdir "/mnt/$i"
    mount --bind "$path" "/mnt/$i"
    i=$((i + 1))
done

for dir in /run /tmp /var/tmp /etc/systemd/system /var/lib/systemd /var/log/journal
do
    if [ -d "$dir" ]; then
        mount -t tmpfs -o mode=755 sandbox-tmpfs "$dir"
    fi
done
chmod 1777 /tmp /var/tmp

# Read-only ones first: a writable folder may lie inside one of them.
i=0
for path in $readonly_paths; do
    mkdir -p "$path"
    mount --move "/mnt/ro$i" "$path"
    mount -o remount,bind,ro "$path"
    i=$((i + 1))
done
i=0
for path in "$work" "$@"; do
    mkdir -p "$path"
    mount --move "/mnt/$i" "$path"
    i=$((i + 1))
done
umount /mnt

# A private /dev: only the harmless nodes, a private devpts and a console that
# writes into the work folder (systemd itself cannot use a file as its console: it
# logs to the journal when the sandbox runs journald).
mkdir /run/sandbox-dev
mount -t tmpfs -o mode=755,nosuid sandbox-dev /run/sandbox-dev
for node in null zero full random urandom tty; do
    touch "/run/sandbox-dev/$node"
    mount --bind "/dev/$node" "/run/sandbox-dev/$node"
done
mkdir /run/sandbox-dev/pts /run/sandbox-dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /run/sandbox-dev/pts
ln -s pts/ptmx /run/sandbox-dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev sandbox-shm /run/sandbox-dev/shm
touch /run/sandbox-dev/console
mount --bind "$work/console.log" /run/sandbox-dev/console
ln -s /proc/self/fd /run/sandbox-dev/fd
ln -s /proc/self/fd/0 /run/sandbox-dev/stdin
ln -s /proc/self/fd/1 /run/sandbox-dev/stdout
ln -s /proc/self/fd/2 /run/sandbox-dev/stderr
mount --move /run/sandbox-dev /dev
rmdir /run/sandbox-dev

# The cgroup namespace makes our own cgroup2 group the root of this mount.
mount -t cgroup2 -o nsdelegate sandbox-cgroup /sys/fs/cgroup

mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
mount -o remount,bind,ro /

mkdir "$work/empty"
exec env -i \
    container=licensed-sandbox \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SYSTEMD_UNIT_PATH="/run/systemd/transient:/run/systemd/system:/etc/systemd/system:$units" \
    SYSTEMD_GENERATOR_PATH="$work/empty" \
    SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$work/empty" \
    /lib/systemd/systemd --unit="$target" --log-target="$log_target"
