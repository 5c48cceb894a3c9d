//! The QEMU tests there are: every `tests/**/*.test` file, named by its path below `tests/`
//! and parsed before anything is built.

use crate::spec::{self, Spec};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Every `tests/**/*.test`, sorted by name. A malformed file stops the run before anything is
/// built: a broken test must be fixed, not skipped.
pub fn load_specs(tests_dir: &Path) -> Result<Vec<Spec>> {
    let mut files = Vec::new();
    collect_test_files(tests_dir, &mut files)?;
    let mut specs = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(tests_dir)
            .expect("found below tests/")
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let spec = spec::parse(&name, &text)
            .with_context(|| format!("invalid test file {}", file.display()))?;
        specs.push(spec);
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

fn collect_test_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        // Guest crates under tests/ may keep a local cargo `target/`; nothing there is a test.
        if path.is_dir() && !path.ends_with("target") {
            collect_test_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "test") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_tests_parse_and_cover_issues_2_and_4() {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        let specs = load_specs(&tests).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "boot/smp1",
            "boot/smp4",
            "boot/el2-fault",
            "boot/panic",
            "boot/el1-entry",
            "linux/boot",
            "linux/shell",
            "linux/native",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }

    /// A typo in a test's `hyp-args` would only show as a log line in a QEMU run that may
    /// fail for other reasons; the hypervisor's own parsers catch it here.
    #[test]
    fn the_committed_hyp_args_are_bootargs_the_hypervisor_takes() {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        let specs = load_specs(&tests).unwrap();
        let with_args: Vec<&Spec> = specs.iter().filter(|s| !s.hyp_args.is_empty()).collect();
        assert!(
            with_args
                .iter()
                .any(|s| s.name == "linux/snapshot" && s.restore.is_some()),
            "the snapshot test lost its hyp-args or its restore"
        );
        assert!(
            with_args.iter().any(|s| s.name == "linux/migrate-storm")
                && with_args.iter().any(|s| s.name == "linux/dirty-harvest"),
            "the migration and dirty-log tests lost their hyp-args"
        );
        for name in ["linux/workload", "linux/console-bytes"] {
            assert!(specs.iter().any(|s| s.name == name), "{name} missing");
        }
        assert!(
            with_args
                .iter()
                .any(|s| s.name == "linux/snapshot-chain" && s.snapshot_files.len() == 3),
            "the snapshot chain test lost its files"
        );
        for spec in with_args {
            let paths: Vec<String> = spec
                .snapshot_files
                .iter()
                .map(|f| format!("/work/target/qemu-logs/{}/{f}", spec.name))
                .collect();
            let path_args: Vec<&str> = paths.iter().map(String::as_str).collect();
            let hyp_args = spec.hyp_args_with(&path_args);
            let (schedule, errors) =
                hyp_formats::monitor::bootargs::schedule_from_bootargs(&hyp_args);
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", spec.name);
            // Each placeholder must end up as the path of a snapshot the hypervisor takes.
            for (i, path) in paths.iter().enumerate() {
                assert!(
                    schedule
                        .timed()
                        .any(|t| t.to_string().contains(&format!("snapshot {path}"))),
                    "{}: no hyp.snapshot= of {}",
                    spec.name,
                    spec::placeholders::snapshot_placeholder(i)
                );
            }
            assert!(
                hyp_formats::log_level::level_from_bootargs(&spec.hyp_args).is_ok(),
                "{}: bad hyp.log=",
                spec.name
            );
        }
        let (schedule, errors) = hyp_formats::monitor::bootargs::schedule_from_bootargs(
            "hyp.migrate-storm=1 hyp.dirty-harvest=200 hyp.dirty-check=1",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(schedule.migrate_storm.is_some() && schedule.dirty_check);
        let (_, errors) =
            hyp_formats::monitor::bootargs::schedule_from_bootargs("hyp.migrate-strom=2");
        assert_eq!(errors.len(), 1, "a misspelt key is refused");
    }

    #[test]
    fn test_files_are_found_recursively_and_named_by_their_path() {
        let dir = std::env::temp_dir().join(format!("xtask-specs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/deep")).unwrap();
        std::fs::write(dir.join("b/deep/two.test"), "expect = y\n").unwrap();
        std::fs::write(dir.join("a.test"), "expect = x\n").unwrap();
        std::fs::write(dir.join("notes.md"), "not a test").unwrap();
        std::fs::create_dir_all(dir.join("b/target")).unwrap();
        std::fs::write(dir.join("b/target/built.test"), "expect = z\n").unwrap();
        let names: Vec<String> = load_specs(&dir)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b/deep/two"]);

        std::fs::write(dir.join("bad.test"), "expect = x\nsmp = many\n").unwrap();
        let err = format!("{:#}", load_specs(&dir).unwrap_err());
        assert!(err.contains("bad.test") && err.contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
