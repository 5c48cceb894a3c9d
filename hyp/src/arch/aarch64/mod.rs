//! aarch64 EL2: boot, vectors, system registers, TLB maintenance.
//! All assembly, system-register and barrier code of the hypervisor lives under this module.
pub mod boot;
pub mod console;
pub mod cpu_id;
pub mod el2;
pub mod exception;
pub mod fatal;
pub mod fpsimd;
pub mod gic;
pub mod guest;
pub mod guest_irq;
pub mod head;
pub mod heap;
pub mod ich;
pub mod irq;
pub mod layout;
pub mod memops;
pub mod mmu;
pub mod percpu;
pub mod pl011;
pub mod psci;
pub mod semihosting;
pub mod smp;
pub mod stage2;
pub mod sysreg;
pub mod timer;
pub mod vcpu;
