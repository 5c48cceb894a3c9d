//! `cargo xtask check`: what CI's reviewers hold every change to, as one command. Every step
//! runs even after a failure, so one run shows all that needs fixing.

use crate::build::{self, HYP_TARGET, Variant};
use crate::exit::Exit;
use crate::workspace::Workspace;
use anyhow::Result;

/// Steps run through cargo, as (what, cargo arguments).
const CARGO_STEPS: &[(&str, &[&str])] = &[
    ("format", &["fmt", "--all", "--check"]),
    (
        "clippy (host)",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    (
        "clippy (aarch64 hyp)",
        &[
            "clippy", "-p", "hyp", "--target", HYP_TARGET, "--", "-D", "warnings",
        ],
    ),
];

pub fn run() -> Result<()> {
    let ws = Workspace::locate()?;
    ws.require_target(HYP_TARGET)?;
    let mut failed = Vec::new();
    for (what, args) in CARGO_STEPS {
        println!("== {what}: cargo {}", args.join(" "));
        let ok = ws.cargo().args(*args).status().is_ok_and(|s| s.success());
        if !ok {
            println!("FAIL {what}");
            failed.push(*what);
        }
    }
    println!("== aarch64 build and flat image");
    if let Err(e) = build::build_hyp(&ws, &Variant::new(Vec::new()), false) {
        println!("error: {e:#}");
        println!("FAIL aarch64 build");
        failed.push("aarch64 build");
    }
    if failed.is_empty() {
        println!("check: all {} steps passed", CARGO_STEPS.len() + 1);
        Ok(())
    } else {
        Err(Exit::with_message(1, format!("check failed: {}", failed.join(", "))).into())
    }
}
