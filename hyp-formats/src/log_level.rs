//! The `hyp.log=LEVEL` bootarg: the hypervisor's log level for the whole run. The monitor's
//! `log` command reads its level with [`crate::monitor::command::parse_level`] instead, which
//! also takes `off` and reports a bad word as a usage error.
#![forbid(unsafe_code)]

use core::fmt;
use log::LevelFilter;

/// A `hyp.log=` value that names no level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownLevel<'a>(pub &'a str);

impl fmt::Display for UnknownLevel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown log level `hyp.log={}` (want error, warn, info, debug or trace); keeping info",
            self.0
        )
    }
}

/// The log level the kernel command line asks for with `hyp.log=LEVEL` (the last one wins).
/// Without one it is `Info`.
///
/// # Errors
/// An unknown value keeps `Info` and is returned, so the caller can warn once logging works.
pub fn level_from_bootargs(bootargs: &str) -> Result<LevelFilter, UnknownLevel<'_>> {
    let Some(value) = bootargs
        .split_ascii_whitespace()
        .filter_map(|a| a.strip_prefix("hyp.log="))
        .next_back()
    else {
        return Ok(LevelFilter::Info);
    };
    match value {
        "error" => Ok(LevelFilter::Error),
        "warn" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        other => Err(UnknownLevel(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_comes_from_the_last_hyp_log_argument() {
        assert_eq!(level_from_bootargs(""), Ok(LevelFilter::Info));
        assert_eq!(
            level_from_bootargs("console=ttyAMA0"),
            Ok(LevelFilter::Info)
        );
        assert_eq!(level_from_bootargs("hyp.log=debug"), Ok(LevelFilter::Debug));
        assert_eq!(
            level_from_bootargs("a hyp.log=error b"),
            Ok(LevelFilter::Error)
        );
        assert_eq!(
            level_from_bootargs("hyp.log=warn hyp.log=trace"),
            Ok(LevelFilter::Trace)
        );
        assert_eq!(level_from_bootargs("xhyp.log=trace"), Ok(LevelFilter::Info));
    }

    #[test]
    fn unknown_level_is_an_error_naming_the_value() {
        let err = level_from_bootargs("hyp.log=loud").unwrap_err();
        assert_eq!(err, UnknownLevel("loud"));
        assert!(alloc::format!("{err}").starts_with("unknown log level `hyp.log=loud`"));
    }
}
