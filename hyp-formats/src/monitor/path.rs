//! A file name on the host, as snapshot commands take it (written through semihosting, so it
//! is relative to QEMU's working directory unless absolute).
#![forbid(unsafe_code)]

use super::word::Word;
use alloc::string::String;
use core::fmt;

/// Longest host path accepted, in bytes.
pub const PATH_MAX: usize = 255;

/// A non-empty path of at most [`PATH_MAX`] bytes without control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPath(String);

impl HostPath {
    /// # Errors
    /// [`BadPath`] for an empty or too long path, or one with a control character.
    pub fn new(s: &str) -> Result<Self, BadPath> {
        if s.is_empty() {
            Err(BadPath::Empty)
        } else if s.len() > PATH_MAX {
            Err(BadPath::TooLong(s.len()))
        } else if s.chars().any(char::is_control) {
            Err(BadPath::ControlCharacter(Word::new(s)))
        } else {
            Ok(Self(String::from(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadPath {
    Empty,
    /// The length in bytes.
    TooLong(usize),
    ControlCharacter(Word),
}

impl fmt::Display for BadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the file name is empty"),
            Self::TooLong(n) => write!(f, "the file name is {n} bytes long (at most {PATH_MAX})"),
            Self::ControlCharacter(w) => write!(f, "the file name {w} has a control character"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn accepts_ordinary_paths_up_to_the_limit() {
        for ok in [
            "a",
            "snap/vm1.hsnap",
            "/tmp/x y",
            "été.snap",
            &"p".repeat(PATH_MAX),
        ] {
            assert_eq!(HostPath::new(ok).map(|p| p.0), Ok(ok.into()), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        assert_eq!(HostPath::new(""), Err(BadPath::Empty));
        assert_eq!(
            HostPath::new(&"p".repeat(PATH_MAX + 1)),
            Err(BadPath::TooLong(PATH_MAX + 1))
        );
        for bad in ["a\tb", "a\nb", "\x1b[2J", "a\u{7f}", "a\u{9b}"] {
            assert!(
                matches!(HostPath::new(bad), Err(BadPath::ControlCharacter(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            format!("{}", HostPath::new("a\x07").unwrap_err()),
            "the file name `a\\u{7}` has a control character"
        );
    }
}
