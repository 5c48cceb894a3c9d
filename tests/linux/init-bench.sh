#!/bin/sh
# /init of `cargo xtask bench`'s boot benchmark: print the guest's virtual counter as the very
# first thing userspace does, then power off. Time to this banner, in counter ticks (one per
# instruction under -icount shift=4), is the boot time compared natively and under the
# hypervisor.
/bin/cntvct "init: banner at cntvct="
/bin/busybox poweroff -f
