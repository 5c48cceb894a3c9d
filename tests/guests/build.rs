//! Links every guest binary with `link.ld`. A build script rather than `.cargo/config.toml`,
//! because cargo reads config from the directory it is started in, and the xtask builds this
//! package from the repository root through `--manifest-path`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
