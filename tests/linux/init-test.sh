#!/bin/sh
# /init of tests/linux/boot.test: checks a 2-vCPU, 512 MiB guest from userspace, prints one
# `linux-test: PASS ...` or `linux-test: FAIL ...` line per check, a summary, then powers off.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo "init: Linux $(uname -r) up on $(nproc) CPUs"
failed=0
pass() { echo "linux-test: PASS $*"; }
fail() { echo "linux-test: FAIL $*"; failed=$((failed + 1)); }

# Both vCPUs came up (PSCI CPU_ON, secondary entry, per-CPU timers and GIC redistributors).
cpus=$(nproc)
if [ "$cpus" = 2 ]; then pass "nproc = 2"; else fail "nproc = $cpus, expected 2"; fi

# The virtual timer interrupts each CPU. An idle CPU may stop its tick (NO_HZ), so keep both
# busy while counting.
taskset 1 sh -c 'while :; do :; done' & spin0=$!
taskset 2 sh -c 'while :; do :; done' & spin1=$!
before=$(grep arch_timer /proc/interrupts | head -n 1)
sleep 1
after=$(grep arch_timer /proc/interrupts | head -n 1)
kill $spin0 $spin1
echo "linux-test: before: $before"
echo "linux-test: after:  $after"
set -- $before
b0=$2 b1=$3
set -- $after
a0=$2 a1=$3
if [ -n "$b0" ] && [ -n "$b1" ] && [ "$a0" -gt "$b0" ] 2>/dev/null && [ "$a1" -gt "$b1" ] 2>/dev/null; then
    pass "timer interrupts advanced on both CPUs ($b0 -> $a0, $b1 -> $a1)"
else
    fail "timer interrupts did not advance on both CPUs ($b0 -> $a0, $b1 -> $a1)"
fi

# Memory: 256 MiB of anonymous memory written and read back twice, each word with a value
# unique to its position and pass, so pages that alias, lose writes or go stale are caught.
# (A compiled program: shell pipes are far too slow under TCG for hundreds of MiB.)
if /bin/memtest 256; then
    pass "wrote and verified 256 MiB"
else
    fail "memory: memtest 256 failed"
fi

if [ $failed = 0 ]; then
    echo "linux-test: all checks passed"
else
    echo "linux-test: $failed checks failed"
fi
# A forced power-off drops console output the tty has not sent yet: wait for it.
/bin/drain
poweroff -f
