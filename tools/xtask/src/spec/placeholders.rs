//! The placeholders a test's `hyp-args` holds for paths only the runner knows: `{snapshot}`,
//! `{snapshot2}`, ... for the `snapshot-file`s, `{dirtylog}` for the `dirty-log-file`. Each file
//! has one spelling, so a file listed but never named (nothing would write it) is caught.

/// What `hyp-args` says for the path of the first `snapshot-file`; the `n`-th (from 2 on) is
/// [`snapshot_placeholder`]`(n - 1)`, `{snapshotN}`.
pub const SNAPSHOT_PLACEHOLDER: &str = "{snapshot}";

/// What `hyp-args` says for the path of `dirty-log-file`.
pub const DIRTY_LOG_PLACEHOLDER: &str = "{dirtylog}";

/// The placeholder of the snapshot file at `index` (0-based) of `snapshot-file`: `{snapshot}`
/// for the first, `{snapshot2}` for the second, and so on.
pub fn snapshot_placeholder(index: usize) -> String {
    match index {
        0 => SNAPSHOT_PLACEHOLDER.to_string(),
        i => format!("{{snapshot{}}}", i + 1),
    }
}

/// The 0-based file index a placeholder's inside (`snapshot`, `snapshot2`, ...) stands for;
/// `None` for anything else (`snapshot1`, `snapshot02` and `snapshot0` included, so each file
/// has one spelling).
fn placeholder_index(inner: &str) -> Option<usize> {
    let digits = inner.strip_prefix("snapshot")?;
    if digits.is_empty() {
        return Some(0);
    }
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 2)
        .map(|n| n - 1)
}

/// The file indexes of the snapshot placeholders in `hyp_args`, sorted, each once; the error
/// is the first `{...}` (or lone brace) that is not one, as the word it starts.
pub fn placeholders_used(hyp_args: &str) -> Result<Vec<usize>, String> {
    let mut used = Vec::new();
    let mut rest = hyp_args;
    while let Some(at) = rest.find(['{', '}']) {
        let from = &rest[at..];
        let inner = from
            .strip_prefix('{')
            .and_then(|f| f.split_once('}'))
            .map(|(inner, _)| inner);
        let Some(index) = inner.and_then(placeholder_index) else {
            let word = from.split_whitespace().next().unwrap_or("");
            return Err(word.to_string());
        };
        used.push(index);
        rest = &from[inner.map_or(0, str::len) + 2..];
    }
    used.sort_unstable();
    used.dedup();
    Ok(used)
}
