//! What the boot DTB says about the machine (memory, CPUs, GIC, UART, PSCI). Portable.

/// How PSCI firmware is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Smc,
    Hvc,
}
