//! The one result line every test ends with, then power off (Xen XTF's four outcomes).
//!
//! - SUCCESS: the behaviour under test is right.
//! - SKIP: the platform lacks something the test needs (for example a second vCPU).
//! - ERROR: the test itself could not run (setup failed, an unexpected exception).
//! - FAILURE: the platform under test (hypervisor or QEMU) behaved wrongly.
//!
//! Each prints exactly one `Test result: ...` line and calls PSCI SYSTEM_OFF, which ends QEMU
//! with status 0; the runner decides pass or fail from the line alone.

use core::fmt;

use crate::{println, psci};

pub fn success() -> ! {
    println!("Test result: SUCCESS");
    power_off()
}

pub fn skip(why: fmt::Arguments<'_>) -> ! {
    println!("Test result: SKIP: {why}");
    power_off()
}

pub fn error(why: fmt::Arguments<'_>) -> ! {
    println!("Test result: ERROR: {why}");
    power_off()
}

pub fn failure(why: fmt::Arguments<'_>) -> ! {
    println!("Test result: FAILURE: {why}");
    power_off()
}

fn power_off() -> ! {
    let x0 = psci::system_off();
    println!("PSCI SYSTEM_OFF returned {:#x}; parking", x0);
    loop {
        crate::exceptions::disable_irqs();
        crate::exceptions::wait_for_interrupt();
    }
}

/// Ends the test with FAILURE unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::report::failure(format_args!($($arg)*));
        }
    };
}
