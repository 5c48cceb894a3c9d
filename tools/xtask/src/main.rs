//! Developer tasks: build, run under QEMU, test, bench.
fn main() {}
