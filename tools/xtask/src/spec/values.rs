//! One `key = value` line and how each kind of value is written: positive numbers, sizes,
//! booleans, exit statuses, typed text, file names for the scratch directory. A value that is
//! not well formed is an error naming its line, so the file's author knows what to fix.

use super::error::{SpecError, SpecErrorKind, err};
use super::escape::unescape;
use super::keys::known_key;
use super::types::ExpectedExit;
use crate::debian;
use crate::size::{self, Size};

/// One `key = value` line of a test file.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub line: usize,
    pub key: &'static str,
    /// Without surrounding spaces or quotes.
    pub value: &'a str,
}

impl<'a> Entry<'a> {
    /// The key and value of the file's `line`, `raw`; `None` for a blank or comment line.
    pub fn read(line: usize, raw: &'a str) -> Result<Option<Self>, SpecError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(None);
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or(err(line, SpecErrorKind::NoEquals))?;
        let key = known_key(key.trim())
            .ok_or_else(|| err(line, SpecErrorKind::UnknownKey(key.trim().to_string())))?;
        let value = unquote(value.trim());
        Ok(Some(Self { line, key, value }))
    }

    /// The error `kind` at this line.
    pub fn error(&self, kind: SpecErrorKind) -> SpecError {
        err(self.line, kind)
    }

    /// A positive whole number.
    pub fn number(&self) -> Result<u64, SpecError> {
        (self.value.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| self.bad_number())
    }

    /// A positive whole number that fits a `u32`: a count of CPUs.
    pub fn count(&self) -> Result<u32, SpecError> {
        u32::try_from(self.number()?).map_err(|_| self.bad_number())
    }

    fn bad_number(&self) -> SpecError {
        self.error(SpecErrorKind::BadNumber {
            key: self.key,
            value: self.value.to_string(),
        })
    }

    pub fn size(&self) -> Result<Size, SpecError> {
        size::parse(self.value).map_err(|e| self.error(SpecErrorKind::BadSize(e)))
    }

    pub fn bool(&self) -> Result<bool, SpecError> {
        match self.value {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(self.error(SpecErrorKind::BadBool {
                key: self.key,
                value: v.to_string(),
            })),
        }
    }

    pub fn exit(&self) -> Result<ExpectedExit, SpecError> {
        match self.value {
            "nonzero" => Ok(ExpectedExit::NonZero),
            v => v
                .parse()
                .map(ExpectedExit::Code)
                .map_err(|_| self.error(SpecErrorKind::BadExit(v.to_string()))),
        }
    }

    /// The bytes a `send`-like key types: the value unescaped, with a newline for a whole line.
    pub fn typed(&self, newline: bool) -> Result<Vec<u8>, SpecError> {
        let mut bytes =
            unescape(self.value).map_err(|e| self.error(SpecErrorKind::BadEscape(e)))?;
        if newline {
            bytes.push(b'\n');
        }
        Ok(bytes)
    }

    /// `machine`'s comma-separated `key=value` options; empty ones are skipped.
    pub fn machine_options(&self) -> Result<Vec<(String, String)>, SpecError> {
        let options = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty());
        options
            .map(|option| {
                let (k, v) = option
                    .split_once('=')
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| {
                        self.error(SpecErrorKind::BadMachineOption(option.to_string()))
                    })?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// `expect-number`'s `TEXT >= N`.
    pub fn expect_number(&self) -> Result<(String, u64), SpecError> {
        let parsed = self
            .value
            .rsplit_once(">=")
            .map(|(text, n)| (text.trim(), n.trim()))
            .filter(|(text, _)| !text.is_empty())
            .and_then(|(text, n)| Some((text.to_string(), n.parse().ok()?)));
        parsed.ok_or_else(|| self.error(SpecErrorKind::BadExpectNumber(self.value.to_string())))
    }

    /// `guest`: `linux` or a bare-metal guest's name, which becomes part of a path.
    pub fn guest_name(&self) -> Result<String, SpecError> {
        let valid = (self.value.chars()).all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(self.error(SpecErrorKind::BadGuestName(self.value.to_string())));
        }
        Ok(self.value.to_string())
    }

    pub fn kernel(&self) -> Result<debian::Kernel, SpecError> {
        debian::Kernel::from_name(self.value)
            .ok_or_else(|| self.error(SpecErrorKind::BadKernel(self.value.to_string())))
    }

    /// `dirty-log-expect`: whether the check must find writes missing (`missed`) or pass.
    pub fn dirty_log_missed(&self) -> Result<bool, SpecError> {
        match self.value {
            "pass" => Ok(false),
            "missed" => Ok(true),
            v => Err(self.error(SpecErrorKind::BadDirtyLogExpect(v.to_string()))),
        }
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A file name for the test's scratch directory: no path, no hidden file, no character a
/// bootarg or shell would trip on.
pub fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}
