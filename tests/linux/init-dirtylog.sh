#!/bin/sh
# /init of tests/linux/dirty-log-check.test: `/bin/workload --pagelog` logs timed page writes
# with their guest frames (the host checks them against the hypervisor's dirty-log file, see
# tools/xtask/src/dirtylog.rs) while the ordinary workload runs beside it for load. The kernel
# command line picks the arguments, commas for spaces: `pagelog.args=` (default
# `--mib,4,--seconds,10`) and `workload.args=` (default `--procs,2,--mib,64,--seconds,12`;
# `none` runs no load). Power off at the end.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo "init: Linux $(uname -r) up on $(nproc) CPUs"
arg() {
    sed -n "s/.*$1\.args=\([^ ]*\).*/\1/p" /proc/cmdline | tr , ' '
}
pargs=$(arg pagelog)
[ -n "$pargs" ] || pargs="--mib 4 --seconds 10"
wargs=$(arg workload)
[ -n "$wargs" ] || wargs="--procs 2 --mib 64 --seconds 12"
# The logged frames must stay the pages' frames: no compaction of locked pages, no huge pages
# (the program also asks for none with madvise).
echo 0 >/proc/sys/vm/compact_unevictable_allowed 2>/dev/null
echo never >/sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
if [ "$wargs" != none ]; then
    echo "init: running workload $wargs"
    # Unquoted on purpose: the words are the program's arguments.
    /bin/workload $wargs &
    load=$!
fi
echo "init: running pagelog $pargs"
if /bin/workload --pagelog $pargs; then
    echo "init: pagelog PASS"
else
    echo "init: pagelog FAIL status $?"
fi
if [ -n "$load" ]; then
    if wait "$load"; then
        echo "workload: PASS"
    else
        echo "workload: FAIL status $?"
    fi
fi
echo "init: powering off"
# A forced power-off drops console output the tty has not sent yet: wait for it.
/bin/drain
poweroff -f
