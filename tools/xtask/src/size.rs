//! Memory sizes as developers type them (`512M`, `4G`), checked before QEMU sees them: QEMU
//! reads a bare number as MiB, which surprises anyone who meant bytes, so a unit is required.

use std::fmt;

/// A memory size in bytes, a whole number of MiB (QEMU's granule for `-m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(u64);

const MIB: u64 = 1 << 20;

impl Size {
    pub fn from_mib(mib: u64) -> Self {
        Self(mib * MIB)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The value for QEMU's `-m`.
    pub fn qemu_arg(self) -> String {
        format!("{}M", self.0 / MIB)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.0 / MIB;
        if mib.is_multiple_of(1024) {
            write!(f, "{}G", mib / 1024)
        } else {
            write!(f, "{mib}M")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    NoNumber(String),
    MissingUnit(String),
    UnknownUnit(String),
    Overflow(String),
    Zero,
    NotWholeMib(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNumber(s) => write!(
                f,
                "`{s}` is not a size; write a number and a unit, like 512M or 4G"
            ),
            Self::MissingUnit(s) => write!(f, "`{s}` has no unit; write {s}M or {s}G"),
            Self::UnknownUnit(s) => write!(
                f,
                "`{s}` has an unknown unit; use K, M, G or T (KiB, MiB, GiB, TiB)"
            ),
            Self::Overflow(s) => write!(f, "`{s}` is too large"),
            Self::Zero => write!(f, "the size must not be zero"),
            Self::NotWholeMib(s) => {
                write!(f, "`{s}` is not a whole number of MiB, which QEMU requires")
            }
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses `<number><unit>` with a binary unit K, M, G or T (optionally `KiB`.. or `KB`..,
/// any case).
pub fn parse(text: &str) -> Result<Size, SizeError> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(SizeError::NoNumber(s.to_string()));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| SizeError::Overflow(s.to_string()))?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" => return Err(SizeError::MissingUnit(s.to_string())),
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeError::UnknownUnit(s.to_string())),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| SizeError::Overflow(s.to_string()))?;
    if bytes == 0 {
        return Err(SizeError::Zero);
    }
    if !bytes.is_multiple_of(MIB) {
        return Err(SizeError::NotWholeMib(s.to_string()));
    }
    Ok(Size(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse("512M").unwrap().bytes(), 512 << 20);
        assert_eq!(parse("4G").unwrap().bytes(), 4 << 30);
        assert_eq!(parse("4g").unwrap().bytes(), 4 << 30);
        assert_eq!(parse("2GiB").unwrap().bytes(), 2 << 30);
        assert_eq!(parse("1T").unwrap().bytes(), 1 << 40);
        assert_eq!(parse("2048K").unwrap().bytes(), 2 << 20);
        assert_eq!(parse(" 64 MB ").unwrap().bytes(), 64 << 20);
    }

    #[test]
    fn qemu_gets_mib_and_people_get_the_short_form() {
        assert_eq!(parse("4G").unwrap().qemu_arg(), "4096M");
        assert_eq!(parse("4G").unwrap().to_string(), "4G");
        assert_eq!(parse("1536M").unwrap().to_string(), "1536M");
    }

    #[test]
    fn malformed_sizes_say_what_is_wrong() {
        assert_eq!(parse("512"), Err(SizeError::MissingUnit("512".into())));
        assert_eq!(parse("M"), Err(SizeError::NoNumber("M".into())));
        assert_eq!(parse("-1G"), Err(SizeError::NoNumber("-1G".into())));
        assert_eq!(parse("12Q"), Err(SizeError::UnknownUnit("12Q".into())));
        assert_eq!(parse("1.5G"), Err(SizeError::UnknownUnit("1.5G".into())));
        assert_eq!(parse("0M"), Err(SizeError::Zero));
        assert_eq!(parse("100K"), Err(SizeError::NotWholeMib("100K".into())));
        assert_eq!(
            parse("99999999999T"),
            Err(SizeError::Overflow("99999999999T".into()))
        );
        assert_eq!(
            parse("99999999999999999999999M"),
            Err(SizeError::Overflow("99999999999999999999999M".into()))
        );
    }
}
