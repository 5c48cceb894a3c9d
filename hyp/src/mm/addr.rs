//! Address newtypes. Each address space has its own `Copy` type so a guest address can never be
//! used where a host address is expected; conversions are named functions, never `as` or `From`.

use core::fmt;

/// Size of the only translation granule we support.
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            pub const fn raw(self) -> u64 {
                self.0
            }
            pub const fn checked_add(self, n: u64) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            pub const fn checked_sub(self, n: u64) -> Option<Self> {
                match self.0.checked_sub(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0.is_multiple_of(align)
            }
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 - self.0 % align)
            }
            pub const fn page_offset(self) -> u64 {
                self.0 % PAGE_SIZE
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address!(
    /// Intermediate physical address: what a guest believes is physical (stage-2 input).
    Ipa,
    "Ipa"
);
address!(
    /// Physical address: what the hardware puts on the bus (stage-2 output).
    Pa,
    "Pa"
);

/// Physical frame number (`Pa >> PAGE_SHIFT`): the index of the ownership record of a frame.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Pfn(u64);

impl Pfn {
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The frame holding `pa` (its page offset is dropped).
    pub const fn containing(pa: Pa) -> Self {
        Self(pa.raw() >> PAGE_SHIFT)
    }
    /// The first byte of this frame.
    pub const fn base(self) -> Pa {
        Pa::new(self.0 << PAGE_SHIFT)
    }
}

/// Guest frame number (`Ipa >> PAGE_SHIFT`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[repr(transparent)]
pub struct Gfn(u64);

impl Gfn {
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }
    pub const fn raw(self) -> u64 {
        self.0
    }
    pub const fn containing(ipa: Ipa) -> Self {
        Self(ipa.raw() >> PAGE_SHIFT)
    }
    pub const fn base(self) -> Ipa {
        Ipa::new(self.0 << PAGE_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_round_trip() {
        let pa = Pa::new(0x4000_1234);
        assert_eq!(Pfn::containing(pa).base(), Pa::new(0x4000_1000));
        assert_eq!(Gfn::containing(Ipa::new(0x2fff)).raw(), 2);
        assert_eq!(Ipa::new(u64::MAX).checked_add(1), None);
        assert!(Pa::new(0x20_0000).is_aligned(0x20_0000));
        assert_eq!(format!("{}", Ipa::new(0x1000)), "0x1000");
    }
}
