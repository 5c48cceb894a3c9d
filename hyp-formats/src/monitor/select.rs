//! Which VM a command is about: a number as `vms` lists them (1 is the first VM) or a name (the
//! VM's dom0less node name, e.g. `domU1`). Without one, commands mean VM 1.
#![forbid(unsafe_code)]

use super::word::Word;
use alloc::string::String;
use core::fmt;
use core::num::NonZeroU16;

/// A VM's number as the monitor shows it: 1-based, so `VmNumber::FIRST` is index 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmNumber(NonZeroU16);

impl VmNumber {
    pub const FIRST: Self = Self(NonZeroU16::MIN);

    /// `None` for 0: numbers start at 1.
    pub const fn new(n: u16) -> Option<Self> {
        match NonZeroU16::new(n) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    /// The number of the VM at `index` in the hypervisor's VM list (0-based).
    pub fn from_index(index: usize) -> Option<Self> {
        u16::try_from(index.checked_add(1)?)
            .ok()
            .and_then(Self::new)
    }

    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The 0-based index into the hypervisor's VM list.
    pub const fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

impl fmt::Display for VmNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Forwarded, so a width or alignment given by the caller applies.
        fmt::Display::fmt(&self.0, f)
    }
}

/// Longest VM name accepted, in bytes.
pub const NAME_MAX: usize = 31;

/// A VM named by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmSelector {
    Number(VmNumber),
    /// An ASCII letter, then letters, digits, `-`, `_` or `.`; at most [`NAME_MAX`] bytes.
    Name(String),
}

impl Default for VmSelector {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl VmSelector {
    /// What commands mean without a VM argument: VM 1.
    pub const DEFAULT: Self = Self::Number(VmNumber::FIRST);

    /// Reads `1`, `2`, ... or a name such as `domU1`.
    ///
    /// # Errors
    /// [`BadVm`] for `0`, a number past `u16::MAX`, or text that is neither a number nor a
    /// well-formed name.
    pub fn parse(s: &str) -> Result<Self, BadVm> {
        let bad = || BadVm(Word::new(s));
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n: u16 = s.parse().map_err(|_| bad())?;
            return VmNumber::new(n).map(Self::Number).ok_or_else(bad);
        }
        let mut bytes = s.bytes();
        let first_is_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if first_is_letter && rest_ok && s.len() <= NAME_MAX {
            Ok(Self::Name(String::from(s)))
        } else {
            Err(bad())
        }
    }

    /// The VM this selects among the VMs named `names` (VM 1 first).
    ///
    /// # Errors
    /// [`NoSuchVm`] when no VM has that number or name.
    pub fn resolve(&self, names: &[&str]) -> Result<VmNumber, NoSuchVm> {
        let found = match self {
            Self::Number(n) => (n.index() < names.len()).then_some(*n),
            Self::Name(s) => names
                .iter()
                .position(|name| name == s)
                .and_then(VmNumber::from_index),
        };
        found.ok_or_else(|| NoSuchVm {
            wanted: self.clone(),
            count: names.len(),
        })
    }

    /// Whether this selects the VM with `number` and `name`.
    pub fn matches(&self, number: VmNumber, name: &str) -> bool {
        match self {
            Self::Number(n) => *n == number,
            Self::Name(s) => s == name,
        }
    }
}

impl fmt::Display for VmSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => fmt::Display::fmt(n, f),
            Self::Name(s) => f.pad(s),
        }
    }
}

/// A selector that matches none of the VMs there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoSuchVm {
    pub wanted: VmSelector,
    /// How many VMs there are.
    pub count: usize,
}

impl fmt::Display for NoSuchVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "there is no VM {} (`vms` lists the {} VMs)",
            self.wanted, self.count
        )
    }
}

/// Text that names no VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadVm(pub Word);

impl fmt::Display for BadVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a VM (want a number from 1 to {} or a name like domU1)",
            self.0,
            u16::MAX
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn num(n: u16) -> VmSelector {
        VmSelector::Number(VmNumber::new(n).unwrap())
    }

    #[test]
    fn numbers_start_at_one() {
        assert_eq!(VmSelector::parse("1"), Ok(num(1)));
        assert_eq!(VmSelector::parse("007"), Ok(num(7)));
        assert_eq!(VmSelector::parse("65535"), Ok(num(65535)));
        for bad in [
            "0",
            "65536",
            "99999999999999999999999",
            "+1",
            "-1",
            "1x",
            "",
        ] {
            assert_eq!(VmSelector::parse(bad), Err(BadVm(Word::new(bad))), "{bad}");
        }
        assert_eq!(VmSelector::DEFAULT, num(1));
    }

    #[test]
    fn names_are_identifiers() {
        assert_eq!(
            VmSelector::parse("domU1"),
            Ok(VmSelector::Name("domU1".into()))
        );
        assert!(VmSelector::parse("a-b_c.d").is_ok());
        assert!(VmSelector::parse(&"a".repeat(NAME_MAX)).is_ok());
        for bad in [
            "1domU",
            "dom U",
            "dom/U",
            "é",
            "-x",
            &"a".repeat(NAME_MAX + 1),
        ] {
            assert!(VmSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn index_and_number_convert_both_ways() {
        assert_eq!(VmNumber::FIRST.index(), 0);
        assert_eq!(VmNumber::from_index(0), Some(VmNumber::FIRST));
        assert_eq!(VmNumber::from_index(65534).map(VmNumber::get), Some(65535));
        assert_eq!(VmNumber::from_index(65535), None);
        assert_eq!(VmNumber::from_index(usize::MAX), None);
        assert_eq!(VmNumber::new(0), None);
    }

    #[test]
    fn selector_matches_number_or_name() {
        let two = VmNumber::new(2).unwrap();
        assert!(num(2).matches(two, "domU2"));
        assert!(!num(1).matches(two, "domU2"));
        assert!(VmSelector::Name("domU2".into()).matches(two, "domU2"));
        assert!(!VmSelector::Name("domU1".into()).matches(two, "domU2"));
    }

    #[test]
    fn resolve_finds_the_vm_by_number_or_name() {
        let names = ["domU1", "domU2"];
        let two = VmNumber::new(2).unwrap();
        assert_eq!(num(2).resolve(&names), Ok(two));
        assert_eq!(VmSelector::Name("domU2".into()).resolve(&names), Ok(two));
        assert_eq!(VmSelector::DEFAULT.resolve(&names), Ok(VmNumber::FIRST));
        let e = num(3).resolve(&names).unwrap_err();
        assert_eq!(format!("{e}"), "there is no VM 3 (`vms` lists the 2 VMs)");
        let e = VmSelector::Name("domU3".into())
            .resolve(&names)
            .unwrap_err();
        assert_eq!(
            format!("{e}"),
            "there is no VM domU3 (`vms` lists the 2 VMs)"
        );
        assert!(VmSelector::DEFAULT.resolve(&[]).is_err());
    }

    #[test]
    fn error_names_the_input_and_the_forms() {
        let e = VmSelector::parse("0").unwrap_err();
        assert_eq!(
            format!("{e}"),
            "`0` is not a VM (want a number from 1 to 65535 or a name like domU1)"
        );
    }
}
