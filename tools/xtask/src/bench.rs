//! `cargo xtask bench`: the project's benchmarks, listed in one table so new kinds (QEMU
//! `-icount` boots of a guest, natively and under the hypervisor) join as new rows and a
//! machine-readable report can cover them all.

use crate::exit::Exit;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only the benchmarks whose name contains FILTER.
    pub filter: Option<String>,
    /// List the benchmarks instead of running them.
    #[arg(long)]
    pub list: bool,
}

/// How a benchmark runs.
enum Kind {
    /// A criterion benchmark on the host: `cargo bench -p <package> --bench <bench>`.
    Criterion {
        package: &'static str,
        bench: &'static str,
        /// Its source, checked first so a missing bench is named rather than a cargo error.
        source: &'static str,
    },
}

struct Bench {
    name: &'static str,
    about: &'static str,
    kind: Kind,
}

const BENCHES: &[Bench] = &[Bench {
    name: "stage2",
    about: "stage-2 map, unmap and fault paths of the memory core (host, criterion)",
    kind: Kind::Criterion {
        package: "hyp",
        bench: "stage2",
        source: "hyp/benches/stage2.rs",
    },
}];

pub fn run(args: &BenchArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let selected: Vec<&Bench> = BENCHES
        .iter()
        .filter(|b| args.filter.as_deref().is_none_or(|f| b.name.contains(f)))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
        bail!(
            "no benchmark name contains `{}`; the benchmarks are: {}",
            args.filter.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    if args.list {
        for b in selected {
            println!("{:<12} {}", b.name, b.about);
        }
        return Ok(());
    }
    let mut failed = Vec::new();
    for b in selected {
        println!("== bench {}: {}", b.name, b.about);
        match &b.kind {
            Kind::Criterion {
                package,
                bench,
                source,
            } => {
                if !ws.root.join(source).is_file() {
                    bail!(
                        "benchmark `{}` has no source yet: {source} does not exist \
                         (it belongs to the memory-core work); nothing was measured",
                        b.name
                    );
                }
                let status = ws
                    .cargo()
                    .args(["bench", "-p", package, "--bench", bench])
                    .status()
                    .context("cannot run `cargo bench`")?;
                if !status.success() {
                    failed.push(b.name);
                }
            }
        }
    }
    if !failed.is_empty() {
        return Err(
            Exit::with_message(1, format!("benchmarks failed: {}", failed.join(", "))).into(),
        );
    }
    Ok(())
}
