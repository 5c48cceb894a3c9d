//! A test's scratch directory, `<target>/qemu-logs/<name>/`, where the hypervisor writes the
//! snapshot and dirty-log files its `hyp-args` name: emptied before the run so only this run's
//! files are found, and each path checked to fit in a bootarg.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The snapshot file, or for a chain its directory and the files in order, for a failure
/// line.
pub(super) fn restored_what(snapshots: &[PathBuf]) -> String {
    match snapshots {
        [one] => one.display().to_string(),
        [first, ..] => {
            let names: Vec<String> = snapshots
                .iter()
                .map(|s| {
                    s.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            let dir = first.parent().unwrap_or(Path::new(""));
            format!("the chain {} in {}", names.join(" + "), dir.display())
        }
        [] => "nothing".to_string(),
    }
}

/// Makes the snapshot files' directory and removes files left by an earlier run, so the
/// restore can only find what this run wrote.
pub(super) fn prepare_snapshots(snapshots: &[PathBuf]) -> Result<()> {
    for snapshot in snapshots {
        if let Some(dir) = snapshot.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::remove_file(snapshot) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", snapshot.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path as `hyp-args` may carry it: the hypervisor's bootargs split at spaces and its
/// options at commas, and it takes at most 255 bytes.
pub(super) fn snapshot_arg(snapshot: &Path) -> Result<String> {
    let path = snapshot
        .to_str()
        .with_context(|| format!("{} is not UTF-8", snapshot.display()))?;
    if path.contains([' ', ',']) || path.len() > hyp_formats::monitor::path::PATH_MAX {
        bail!(
            "the snapshot path {path} cannot be a hypervisor bootarg (no spaces or commas, at most \
             {} bytes); use a shorter target directory",
            hyp_formats::monitor::path::PATH_MAX
        );
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_files_start_absent_and_their_paths_must_fit_a_bootarg() {
        let dir = std::env::temp_dir().join(format!("xtask-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files: Vec<PathBuf> = ["base.snap", "d1.snap", "d2.snap"]
            .iter()
            .map(|f| dir.join("linux/chain").join(f))
            .collect();
        prepare_snapshots(&files).unwrap();
        assert!(files[0].parent().unwrap().is_dir());
        assert!(files.iter().all(|f| !f.exists()));
        for f in &files[1..] {
            std::fs::write(f, b"stale").unwrap();
        }
        prepare_snapshots(&files).unwrap();
        assert!(
            files.iter().all(|f| !f.exists()),
            "a stale diff would be restored"
        );
        prepare_snapshots(&[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(restored_what(&files[..1]), files[0].display().to_string());
        assert_eq!(
            restored_what(&files),
            format!(
                "the chain base.snap + d1.snap + d2.snap in {}",
                dir.join("linux/chain").display()
            )
        );

        assert_eq!(
            snapshot_arg(Path::new("/t/qemu-logs/a/run.snap")).unwrap(),
            "/t/qemu-logs/a/run.snap"
        );
        let long = format!("/{}/run.snap", "d".repeat(250));
        for bad in ["/my target/run.snap", "/a,b/run.snap", long.as_str()] {
            let e = snapshot_arg(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("cannot be a hypervisor bootarg"), "{bad}: {e}");
        }
    }
}
