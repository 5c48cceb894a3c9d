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
    # busybox's poweroff signals PID 1 (USR2; USR1 for halt, TERM for reboot). A shell runs a
    # trap only once its foreground command ends, but `wait` returns at once: so the shell
    # runs in the background, on the console (cttyhack makes it the controlling terminal, so
    # Ctrl-C works).
    trap 'echo "init: powering off"; /bin/drain; poweroff -f' USR1 USR2 TERM
    setsid cttyhack sh </dev/console >/dev/console 2>&1 &
    wait $!
fi
echo "init: powering off"
# A forced power-off drops console output the tty has not sent yet: wait for it.
/bin/drain
poweroff -f
