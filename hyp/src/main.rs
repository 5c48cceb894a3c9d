//! The EL2 hypervisor binary. It only exists for the bare-metal aarch64 target; on the host this
//! file builds to a stub so `cargo build --workspace` and `cargo clippy --workspace` work there.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("the hyp binary runs at EL2 on aarch64; build it with `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod el2 {
    use core::fmt::Write;
    use hyp::arch::aarch64::{pl011, psci, semihosting, sysreg};

    #[unsafe(no_mangle)]
    extern "C" fn hyp_boot(dtb: u64) -> ! {
        // SAFETY: QEMU virt's PL011, MMU off.
        let mut uart = unsafe { pl011::Pl011::new(pl011::QEMU_VIRT_PL011) };
        let _ = writeln!(uart, "hello from EL{} dtb={dtb:#x}", sysreg::current_el());
        if sysreg::current_el() != 2 {
            semihosting::exit(3);
        }
        psci::system_off();
        loop {
            sysreg::wfe();
        }
    }

    #[unsafe(no_mangle)]
    extern "C" fn secondary_main(_cpu: u64) -> ! {
        loop {
            sysreg::wfe();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        loop {
            sysreg::wfe();
        }
    }
}
