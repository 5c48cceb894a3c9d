#!/bin/sh
# /init of the workload tests (tests/linux/workload.test, migrate-storm.test, dirty-harvest.test):
# run /bin/workload, which writes and verifies patterns over guest memory in several processes,
# print whether it passed, then power off. A self-check comes first: the workload must catch a
# write it loses on purpose. The kernel command line picks its arguments with
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
# First check the checker: a small run with one write deliberately lost must find exactly that
# word. Its output is captured, and shown only if the check fails, renamed so that the tests'
# `forbid` of real bad words does not match it.
out=$(/bin/workload --procs 2 --mib 2 --passes 2 --lose-write)
status=$?
case "$out" in
*"workload: total bad words 1 ("*)
    if [ $status = 1 ]; then
        echo "init: workload self-check passed: the lost write was found"
    else
        echo "init: workload self-check FAILED: status $status"
    fi
    ;;
*)
    echo "init: workload self-check FAILED: the lost write was not found"
    echo "$out" | sed 's/^workload:/workload self-check:/'
    ;;
esac
echo "init: running workload $args"
# Unquoted on purpose: the words are the program's arguments.
if /bin/workload $args; then
    echo "workload: PASS"
else
    echo "workload: FAIL status $?"
fi
echo "init: powering off"
# A forced power-off drops console output the tty has not sent yet: wait for it.
/bin/drain
poweroff -f
