//! aarch64 EL2: boot, vectors, system registers, TLB maintenance.
pub mod head;
pub mod heap;
pub mod layout;
pub mod pl011;
pub mod psci;
pub mod semihosting;
pub mod sysreg;
