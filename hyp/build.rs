//! Links the EL2 binary with our own script; the host build (unit tests) needs none.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("aarch64")
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none")
    {
        let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
        let script = manifest.join("../linker/hyp.ld");
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // A static PIE: the entry code applies its own R_AARCH64_RELATIVE relocations, so the
        // image runs wherever a loader puts it (see linker/hyp.ld). `-z notext` allows those
        // relocations in read-only data, which the entry code patches before the MMU is on.
        for arg in ["-pie", "--no-dynamic-linker", "-z", "notext"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
