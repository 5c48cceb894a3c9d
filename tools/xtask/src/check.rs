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
        "clippy (aarch64 hyp, hyp-formats)",
        &[
            "clippy",
            "-p",
            "hyp",
            "-p",
            "hyp-formats",
            "--target",
            HYP_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    ),
];

/// The guest programs with workspaces of their own (outside the root workspace, so `--all` and
/// `--workspace` miss them): (manifest, target, target directory below the xtask's).
const GUEST_CRATES: &[(&str, &str, &str)] = &[
    ("tests/guests/Cargo.toml", HYP_TARGET, "guests"),
    (
        "tests/linux/progs/Cargo.toml",
        "aarch64-unknown-none",
        "progs",
    ),
];

pub fn run() -> Result<()> {
    let ws = Workspace::locate()?;
    ws.require_target(HYP_TARGET)?;
    ws.require_component("rustfmt", "fmt")?;
    ws.require_component("clippy", "clippy")?;
    let mut steps: Vec<(String, Vec<String>)> = CARGO_STEPS
        .iter()
        .map(|(what, args)| {
            (
                what.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            )
        })
        .collect();
    for &(manifest, target, dir) in GUEST_CRATES {
        if !ws.root.join(manifest).is_file() {
            continue;
        }
        let crate_dir = manifest.trim_end_matches("/Cargo.toml");
        steps.push((
            format!("format ({crate_dir})"),
            ["fmt", "--manifest-path", manifest, "--check"]
                .map(String::from)
                .to_vec(),
        ));
        let target_dir = ws.target_dir.join(dir).to_string_lossy().into_owned();
        steps.push((
            format!("clippy ({crate_dir})"),
            [
                "clippy",
                "--manifest-path",
                manifest,
                "--target",
                target,
                "--target-dir",
                &target_dir,
                "--",
                "-D",
                "warnings",
            ]
            .map(String::from)
            .to_vec(),
        ));
    }
    let mut failed = Vec::new();
    for (what, args) in &steps {
        println!("== {what}: cargo {}", args.join(" "));
        let ok = ws.cargo().args(args).status().is_ok_and(|s| s.success());
        if !ok {
            println!("FAIL {what}");
            failed.push(what.clone());
        }
    }
    println!("== aarch64 build and flat image");
    if let Err(e) = build::build_hyp(&ws, &Variant::new(Vec::new()), false) {
        println!("error: {e:#}");
        println!("FAIL aarch64 build");
        failed.push("aarch64 build".to_string());
    }
    if failed.is_empty() {
        println!("check: all {} steps passed", steps.len() + 1);
        Ok(())
    } else {
        Err(Exit::with_message(1, format!("check failed: {}", failed.join(", "))).into())
    }
}
