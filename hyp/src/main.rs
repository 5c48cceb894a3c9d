//! The EL2 hypervisor binary. It only exists for the bare-metal aarch64 target; on the host this
//! file builds to a stub so `cargo build --workspace` and `cargo clippy --workspace` work there.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("the hyp binary runs at EL2 on aarch64; build it with `cargo xtask build`");
    std::process::exit(2);
}
