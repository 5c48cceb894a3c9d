//! What the boot DTB says about the machine (memory, CPUs, GIC, UART, PSCI). Portable.
