#!/bin/sh
# /init of the default guest (`cargo xtask qemu`): mount the kernel's filesystems, print one
# banner line, then an interactive shell on the console. `poweroff` (or leaving the shell) powers
# the VM off, which ends the run with status 0.
#
# A kernel command line with `init.cmd=COMMAND` (no spaces) runs COMMAND instead of the shell
# and then powers off, so tests can check this very path unattended.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
echo "init: Linux $(uname -r) up on $(nproc) CPUs"
cmd=$(sed -n 's/.*init\.cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$cmd" ]; then
    echo "init: running $cmd"
    $cmd
else
    echo "init: type poweroff to end the run"
    # cttyhack gives the shell the console as its controlling terminal, so Ctrl-C works.
    setsid cttyhack sh
fi
echo "init: powering off"
poweroff -f
