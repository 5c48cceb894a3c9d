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
    use hyp::arch::aarch64::fatal::{self, ExitCode, Fatal};
    use hyp::arch::aarch64::layout::ImageLayout;
    use hyp::arch::aarch64::{boot, console, guest, smp};

    /// The boot CPU's first Rust code (from `_start`, see arch/aarch64/head.rs).
    #[unsafe(no_mangle)]
    extern "C" fn hyp_boot(dtb: u64) -> ! {
        let mut booted = boot::boot_cpu(dtb);
        let online = smp::start_secondaries(&booted.machine);
        if cfg!(feature = "test-el2-fault") {
            // The guard page below CPU 0's stack: unmapped, so this must fault at level 3.
            let guard = ImageLayout::get().guard_pages(0)[0].raw();
            log::info!("test-el2-fault: reading stack guard page {guard:#x}");
            // SAFETY: deliberately unsound: this test build reads an unmapped page to check
            // that the EL2 exception report works. The read never completes.
            let v = unsafe { core::ptr::read_volatile(guard as *const u64) };
            log::error!("read {v:#x} from a guard page: the fault did not happen");
        }
        #[cfg(feature = "test-irq")]
        if !hyp::arch::aarch64::irq::selftest(&booted.machine) {
            fatal::stop_machine(ExitCode::Exception);
        }
        if cfg!(feature = "test-panic") {
            panic!("test-panic build: deliberate panic after bring-up");
        }
        if !booted.domains.is_empty() {
            if guest::create_all(&booted.domains, &mut booted.frames, online, &booted.machine) > 0 {
                guest::pcpu_main(0);
            }
            log::error!("no domain could be created: powering off");
            fatal::stop_machine(ExitCode::BootFailed)
        }
        log::info!("no guest to run: powering off");
        fatal::power_off()
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        match fatal::enter() {
            Fatal::Report => {
                let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
                console::print_line(format_args!("panic at {file}:{line}: {}", info.message()));
            }
            Fatal::Nested => {
                console::print_raw(format_args!("panic while panicking: {}", info.message()))
            }
            Fatal::Park => fatal::park(),
        }
        fatal::stop_machine(ExitCode::Panic)
    }
}
