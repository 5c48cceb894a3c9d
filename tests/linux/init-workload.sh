#!/bin/sh
# /init of the workload tests (tests/linux/workload.test, migrate-storm.test, dirty-harvest.test):
# run /bin/workload, which writes and verifies patterns over guest memory in several processes,
# print whether it passed, then power off. The kernel command line picks its arguments with
# `workload.args=` and commas for spaces (e.g. `workload.args=--procs,2,--mib,64,--passes,3`);
# without it: 4 processes, 256 MiB, 20 s of guest time.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo "init: Linux $(uname -r) up on $(nproc) CPUs"
args=$(sed -n 's/.*workload\.args=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
[ -n "$args" ] || args="--procs 4 --mib 256 --seconds 20"
echo "init: running workload $args"
# Unquoted on purpose: the words are the program's arguments.
if /bin/workload $args; then
    echo "workload: PASS"
else
    echo "workload: FAIL status $?"
fi
echo "init: powering off"
poweroff -f
