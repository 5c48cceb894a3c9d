//! A test file that both the parser's and the judge's tests read.

pub const SMP4: &str = r#"
# Four CPUs come online.
smp = 4
mem = 512M
machine = highmem=off
expect = cpu 0 online (MPIDR 0x
expect-anywhere = cpu 3 online
expect = all 4 CPUs online
forbid = panic at
timeout = 30
"#;
