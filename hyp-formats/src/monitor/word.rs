//! A piece of user input quoted in an error message: cut to a fixed length and printed with
//! control characters escaped, so an error stays one short line whatever was typed and cannot
//! move the cursor or ring the bell on the console.
#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt;

/// Longest quoted input, in bytes; longer input is cut (at a character boundary) and marked.
pub const WORD_MAX: usize = 32;

/// Quoted user input, displayed as `` `text` `` (or `` `text...` `` when it was cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    text: String,
    cut: bool,
}

impl Word {
    pub fn new(s: &str) -> Self {
        if s.len() <= WORD_MAX {
            return Self {
                text: String::from(s),
                cut: false,
            };
        }
        let mut end = WORD_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            text: String::from(&s[..end]),
            cut: true,
        }
    }

    /// The kept text (without escaping or the cut mark).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`")?;
        for c in self.text.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str(if self.cut { "...`" } else { "`" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn short_input_is_quoted_whole() {
        let w = Word::new("domU9");
        assert_eq!(format!("{w}"), "`domU9`");
        assert!(!w.is_cut());
    }

    #[test]
    fn long_input_is_cut_at_a_char_boundary() {
        let s = "é".repeat(40); // 2 bytes each: byte 32 is a boundary, so 16 of them stay.
        let w = Word::new(&s);
        assert!(w.is_cut());
        assert_eq!(w.as_str(), "é".repeat(16));
        let s = format!("x{}", "é".repeat(40)); // byte 32 is mid-character: 15 stay.
        let w = Word::new(&s);
        assert_eq!(w.as_str().len(), 31);
        assert!(format!("{w}").ends_with("...`"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let w = Word::new("a\x1b[2Jb\x07\u{85}");
        assert_eq!(format!("{w}"), "`a\\u{1b}[2Jb\\u{7}\\u{85}`");
    }
}
