//! Stage-2 translation table descriptors (VMSAv8-64, 4 KiB granule).
//!
//! This is the only module that knows the bit layout of a descriptor. Everything else builds a
//! [`Pte`] from typed parts and decodes it into an [`Entry`] before acting on it.
//!
//! Layout used (Arm ARM DDI 0487, "VMSAv8-64 translation table format descriptors" and "Stage 2
//! memory region attributes"):
//! - bits[1:0]: `0b01` block (levels 1 and 2), `0b11` table (levels 0-2) or page (level 3);
//!   bit 0 clear means invalid, and then bits[63:1] are ignored by hardware (we keep an
//!   [`Annotation`] in bits[63:2], like pKVM keeps an owner id in invalid entries).
//! - MemAttr bits[5:2]: without FEAT_S2FWB `0b1111` = Normal inner/outer write-back,
//!   `0b0001` = Device-nGnRE; with FEAT_S2FWB (HCR_EL2.FWB=1) `0b0110` = Normal write-back
//!   forced, `0b0001` = Device-nGnRE. In both, MemAttr[2] set means Normal.
//! - S2AP bits[7:6]: bit 6 read, bit 7 write. SH bits[9:8] = `0b11` inner shareable.
//!   AF bit 10 (always set: we do not use hardware access-flag management).
//! - Output address bits[47:12] (page/table), [47:21] (level-2 block), [47:30] (level-1 block).
//! - XN bit 54 (XN[1:0] = `0b10`: not executable at EL1 or EL0).
//! - Software bits[58:55] in valid leaves: [`SwBits`], meaning defined by the ownership layer.

use core::fmt;

use super::addr::{Ipa, PAGE_SHIFT, Pa};

/// Entries per 4 KiB table.
pub const ENTRIES_PER_TABLE: usize = 512;
const _: () = assert!(ENTRIES_PER_TABLE * 8 == super::addr::PAGE_SIZE as usize);

/// Bits resolved by one level of a 4 KiB-granule table.
const BITS_PER_LEVEL: u32 = 9;

/// A translation level (0..=3). Level 3 maps 4 KiB pages; levels 1 and 2 may hold blocks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Level(u8);

impl Level {
    pub const L0: Self = Self(0);
    pub const L1: Self = Self(1);
    pub const L2: Self = Self(2);
    pub const L3: Self = Self(3);

    pub const fn new(level: u8) -> Option<Self> {
        if level <= 3 { Some(Self(level)) } else { None }
    }
    pub const fn raw(self) -> u8 {
        self.0
    }
    /// Shift of the lowest IPA bit this level's index resolves.
    pub const fn shift(self) -> u32 {
        PAGE_SHIFT + BITS_PER_LEVEL * (3 - self.0 as u32)
    }
    /// Bytes one entry at this level maps (4 KiB, 2 MiB, 1 GiB, 512 GiB).
    pub const fn entry_size(self) -> u64 {
        1 << self.shift()
    }
    /// The level of the table an entry at this level points to.
    pub const fn next(self) -> Option<Self> {
        if self.0 < 3 {
            Some(Self(self.0 + 1))
        } else {
            None
        }
    }
    /// Whether a leaf may sit at this level: pages at 3, blocks at 1 and 2 (4 KiB granule,
    /// no FEAT_LPA2 so no level-0 blocks).
    pub const fn allows_leaf(self) -> bool {
        self.0 >= 1
    }
    /// Index of `ipa` in a (non-concatenated) table at this level.
    pub const fn index(self, ipa: Ipa) -> usize {
        ((ipa.raw() >> self.shift()) as usize) & (ENTRIES_PER_TABLE - 1)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Stage-2 access permissions (S2AP plus XN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct S2Perms(u8);

impl S2Perms {
    pub const NONE: Self = Self(0);
    pub const R: Self = Self(1);
    pub const W: Self = Self(2);
    pub const X: Self = Self(4);
    pub const RW: Self = Self(1 | 2);
    pub const RX: Self = Self(1 | 4);
    pub const RWX: Self = Self(1 | 2 | 4);

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
    pub const fn readable(self) -> bool {
        self.contains(Self::R)
    }
    pub const fn writable(self) -> bool {
        self.contains(Self::W)
    }
    pub const fn executable(self) -> bool {
        self.contains(Self::X)
    }
}

impl fmt::Debug for S2Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |p: Self, c: char| if self.contains(p) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(Self::R, 'r'),
            flag(Self::W, 'w'),
            flag(Self::X, 'x')
        )
    }
}

/// Stage-2 memory type of a leaf.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum MemType {
    /// Normal memory, inner and outer write-back (RAM).
    #[default]
    Normal,
    /// Device-nGnRE (MMIO passed through).
    Device,
}

/// How MemAttr is encoded: depends on whether HCR_EL2.FWB is set (FEAT_S2FWB).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct AttrEncoding {
    pub fwb: bool,
}

/// The four software bits of a valid leaf (bits[58:55]); the ownership layer gives them meaning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SwBits(u8);

impl SwBits {
    pub const NONE: Self = Self(0);
    pub const MAX: u8 = 0xf;

    /// `None` if `bits` does not fit in four bits.
    pub const fn new(bits: u8) -> Option<Self> {
        if bits <= Self::MAX {
            Some(Self(bits))
        } else {
            None
        }
    }
    pub const fn raw(self) -> u8 {
        self.0
    }
}

/// Software payload of an invalid entry (62 bits; hardware ignores it). Zero means "nothing
/// here"; anything else (an owner id, a "being changed" marker) keeps the entry's table alive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Annotation(u64);

impl Annotation {
    pub const NONE: Self = Self(0);
    pub const MAX: u64 = (1 << 62) - 1;

    /// `None` if `value` does not fit in 62 bits.
    pub const fn new(value: u64) -> Option<Self> {
        if value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }
    pub const fn raw(self) -> u64 {
        self.0
    }
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// Everything about a leaf other than its output address and level.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct LeafAttrs {
    pub perms: S2Perms,
    pub mem: MemType,
    pub sw: SwBits,
}

impl LeafAttrs {
    pub const fn normal(perms: S2Perms) -> Self {
        Self {
            perms,
            mem: MemType::Normal,
            sw: SwBits::NONE,
        }
    }
    pub const fn device(perms: S2Perms) -> Self {
        Self {
            perms,
            mem: MemType::Device,
            sw: SwBits::NONE,
        }
    }
    pub const fn with_perms(self, perms: S2Perms) -> Self {
        Self { perms, ..self }
    }
    pub const fn with_sw(self, sw: SwBits) -> Self {
        Self { sw, ..self }
    }
}

/// A decoded descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Entry {
    /// Translation faults here; the payload is ours.
    Invalid(Annotation),
    /// Points to the next-level table.
    Table(Pa),
    /// A block (levels 1-2) or page (level 3) mapping `pa` (the first byte of the entry's range).
    Leaf { pa: Pa, attrs: LeafAttrs },
}

impl Entry {
    pub const fn is_valid(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }
}

// Raw layout; private to this module.
const VALID: u64 = 1 << 0;
const TYPE_TABLE_OR_PAGE: u64 = 1 << 1;
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_MASK: u64 = 0xf << MEMATTR_SHIFT;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << MEMATTR_SHIFT;
const MEMATTR_NORMAL_WB_FWB: u64 = 0b0110 << MEMATTR_SHIFT;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << MEMATTR_SHIFT;
const MEMATTR_IS_NORMAL: u64 = 0b0100 << MEMATTR_SHIFT;
const S2AP_R: u64 = 1 << 6;
const S2AP_W: u64 = 1 << 7;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;
const SW_SHIFT: u32 = 55;
const SW_MASK: u64 = 0xf << SW_SHIFT;
const OA_MASK: u64 = ((1 << 48) - 1) & !((1 << PAGE_SHIFT) - 1);
const ANNOTATION_SHIFT: u32 = 2;

/// A raw stage-2 descriptor as it sits in memory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(u64);

const _: () = assert!(core::mem::size_of::<Pte>() == 8);

impl Pte {
    /// The all-zero invalid entry: nothing mapped, nothing annotated.
    pub const INVALID: Self = Self(0);

    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    pub const fn raw(self) -> u64 {
        self.0
    }
    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }
    /// Whether this is a table descriptor when found at `level`.
    pub const fn is_table(self, level: Level) -> bool {
        level.0 < 3 && self.0 & (VALID | TYPE_TABLE_OR_PAGE) == VALID | TYPE_TABLE_OR_PAGE
    }

    /// An invalid entry carrying `annotation`.
    pub const fn invalid(annotation: Annotation) -> Self {
        Self(annotation.0 << ANNOTATION_SHIFT)
    }

    /// A table descriptor pointing to the (page-aligned) table at `table`.
    pub fn table(table: Pa) -> Self {
        debug_assert!(
            table.raw() & !OA_MASK == 0,
            "table {table:?} not a 48-bit page address"
        );
        Self(table.raw() | VALID | TYPE_TABLE_OR_PAGE)
    }

    /// A block (levels 1-2) or page (level 3) descriptor.
    pub fn leaf(pa: Pa, level: Level, attrs: LeafAttrs, enc: AttrEncoding) -> Self {
        debug_assert!(level.allows_leaf(), "no leaf at level {level}");
        debug_assert!(
            pa.is_aligned(level.entry_size()),
            "{pa:?} misaligned for level {level}"
        );
        debug_assert!(pa.raw() & !OA_MASK == 0, "{pa:?} beyond 48 bits");
        let ty = if level.0 == 3 {
            VALID | TYPE_TABLE_OR_PAGE
        } else {
            VALID
        };
        let memattr = match (attrs.mem, enc.fwb) {
            (MemType::Normal, false) => MEMATTR_NORMAL_WB,
            (MemType::Normal, true) => MEMATTR_NORMAL_WB_FWB,
            (MemType::Device, _) => MEMATTR_DEVICE_NGNRE,
        };
        let mut raw = pa.raw() | ty | memattr | SH_INNER | AF;
        if attrs.perms.readable() {
            raw |= S2AP_R;
        }
        if attrs.perms.writable() {
            raw |= S2AP_W;
        }
        if !attrs.perms.executable() {
            raw |= XN;
        }
        raw |= (attrs.sw.0 as u64) << SW_SHIFT;
        Self(raw)
    }

    /// Decode as found at `level`. A level-3 entry with bits[1:0] = `0b01` is reserved and
    /// translates like an invalid one, so it decodes as invalid (we never write one).
    pub fn decode(self, level: Level) -> Entry {
        let raw = self.0;
        if raw & VALID == 0 {
            return Entry::Invalid(Annotation(raw >> ANNOTATION_SHIFT));
        }
        let table_or_page = raw & TYPE_TABLE_OR_PAGE != 0;
        if level.0 < 3 && table_or_page {
            return Entry::Table(Pa::new(raw & OA_MASK));
        }
        if (level.0 == 3 && !table_or_page) || !level.allows_leaf() {
            debug_assert!(false, "reserved descriptor {raw:#x} at level {level}");
            return Entry::Invalid(Annotation(raw >> ANNOTATION_SHIFT));
        }
        let oa = raw & OA_MASK & !(level.entry_size() - 1);
        let mut perms = S2Perms::NONE;
        if raw & S2AP_R != 0 {
            perms = perms.union(S2Perms::R);
        }
        if raw & S2AP_W != 0 {
            perms = perms.union(S2Perms::W);
        }
        if raw & XN == 0 {
            perms = perms.union(S2Perms::X);
        }
        let mem = if raw & MEMATTR_MASK & MEMATTR_IS_NORMAL != 0 {
            MemType::Normal
        } else {
            MemType::Device
        };
        let sw = SwBits(((raw & SW_MASK) >> SW_SHIFT) as u8);
        Entry::Leaf {
            pa: Pa::new(oa),
            attrs: LeafAttrs { perms, mem, sw },
        }
    }

    /// Encode a decoded entry back (the inverse of [`Pte::decode`] at `level`).
    pub fn encode(entry: Entry, level: Level, enc: AttrEncoding) -> Self {
        match entry {
            Entry::Invalid(a) => Self::invalid(a),
            Entry::Table(pa) => Self::table(pa),
            Entry::Leaf { pa, attrs } => Self::leaf(pa, level, attrs, enc),
        }
    }

    /// The next-level table a table entry at `level` points to (`None` for anything else).
    /// The walker's fast path: no full decode.
    #[inline]
    pub const fn next_table(self, level: Level) -> Option<Pa> {
        if self.is_table(level) {
            Some(Pa::new(self.0 & OA_MASK))
        } else {
            None
        }
    }

    /// Everything but the output address (type, attributes, software bits). Two valid leaves
    /// at the same level with equal `attr_bits` decode to equal [`LeafAttrs`].
    #[inline]
    pub const fn attr_bits(self) -> u64 {
        self.0 & !OA_MASK
    }

    /// This entry's output address with `attr_bits` taken from another entry of the same kind.
    #[inline]
    pub const fn with_attr_bits(self, attr_bits: u64) -> Self {
        Self((self.0 & OA_MASK) | (attr_bits & !OA_MASK))
    }

    /// Whether the access flag is set (always, for leaves we write).
    pub const fn access_flag(self) -> bool {
        self.0 & AF != 0
    }
}

/// Leaf encoding with the attribute bits computed once, for operations writing many leaves
/// with the same attributes (`encoder.leaf(pa, level) == Pte::leaf(pa, level, attrs, enc)`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LeafEncoder {
    page: u64,
    block: u64,
}

impl LeafEncoder {
    pub fn new(attrs: LeafAttrs, enc: AttrEncoding) -> Self {
        Self {
            page: Pte::leaf(Pa::new(0), Level::L3, attrs, enc).0,
            block: Pte::leaf(Pa::new(0), Level::L2, attrs, enc).0,
        }
    }

    #[inline]
    pub fn leaf(&self, pa: Pa, level: Level) -> Pte {
        debug_assert!(level.allows_leaf() && pa.is_aligned(level.entry_size()));
        debug_assert!(pa.raw() & !OA_MASK == 0, "{pa:?} beyond 48 bits");
        Pte(pa.raw() | if level.0 == 3 { self.page } else { self.block })
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte({:#018x})", self.0)
    }
}

/// What replacing a live entry `old` by `new` (same slot, same level) requires.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Change {
    /// Same descriptor for the hardware (software bits may differ): store, no maintenance.
    Unchanged,
    /// `old` is invalid: nothing can be cached for it, store the new entry directly.
    Install,
    /// Same address, size and type, permissions only added (and/or SW bits changed): store, no
    /// TLB maintenance. Arm ARM DDI 0487 "Using break-before-make when updating translation
    /// table entries" requires BBM only for changes of output address, block size, memory type
    /// or shareability; a stale, stricter TLB entry can only cause a spurious permission fault,
    /// which the fault path resolves by finding the entry already relaxed.
    Relax,
    /// Same address, size and type, some permission removed: store, then invalidate the IPA and
    /// wait for completion before relying on the restriction (no BBM needed, by the rule above).
    Restrict,
    /// `old` valid, `new` invalid: store, then invalidate (IPA for a leaf, whole VMID for a table).
    Remove,
    /// Output address, size (leaf <-> table) or memory type changes: break-before-make.
    BreakBeforeMake,
}

/// Classify the change of one slot from `old` to `new`.
pub fn classify_change(old: Entry, new: Entry) -> Change {
    match (old, new) {
        (Entry::Invalid(_), _) => Change::Install,
        (_, Entry::Invalid(_)) => Change::Remove,
        (Entry::Table(a), Entry::Table(b)) if a == b => Change::Unchanged,
        (
            Entry::Leaf {
                pa: pa_old,
                attrs: old,
            },
            Entry::Leaf {
                pa: pa_new,
                attrs: new,
            },
        ) if pa_old == pa_new && old.mem == new.mem => {
            if old.perms == new.perms {
                Change::Unchanged
            } else if new.perms.contains(old.perms) {
                Change::Relax
            } else {
                Change::Restrict
            }
        }
        _ => Change::BreakBeforeMake,
    }
}

/// Without break-before-make a live entry may change only permissions, AF and software bits,
/// never its output address, size (leaf <-> table) or memory type.
pub fn needs_bbm(old: Entry, new: Entry) -> bool {
    classify_change(old, new) == Change::BreakBeforeMake
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENC: AttrEncoding = AttrEncoding { fwb: false };

    #[test]
    fn leaf_round_trips_at_every_leaf_level() {
        for (level, pa) in [
            (Level::L1, 0x4000_0000),
            (Level::L2, 0x20_0000),
            (Level::L3, 0x1000),
        ] {
            for perms in [
                S2Perms::NONE,
                S2Perms::R,
                S2Perms::RW,
                S2Perms::RX,
                S2Perms::RWX,
            ] {
                for mem in [MemType::Normal, MemType::Device] {
                    for fwb in [false, true] {
                        let attrs = LeafAttrs {
                            perms,
                            mem,
                            sw: SwBits::new(0xa).unwrap(),
                        };
                        let pte = Pte::leaf(Pa::new(pa), level, attrs, AttrEncoding { fwb });
                        assert!(pte.access_flag());
                        assert_eq!(
                            pte.decode(level),
                            Entry::Leaf {
                                pa: Pa::new(pa),
                                attrs
                            }
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn known_encodings() {
        let page = Pte::leaf(
            Pa::new(0x8000_1000),
            Level::L3,
            LeafAttrs::normal(S2Perms::RW),
            ENC,
        );
        // page, MemAttr 0b1111, S2AP RW, SH inner, AF, XN.
        assert_eq!(page.raw(), 0x0040_0000_8000_17ff);
        let dev = Pte::leaf(
            Pa::new(0x20_0000),
            Level::L2,
            LeafAttrs::device(S2Perms::R),
            ENC,
        );
        assert_eq!(dev.raw(), 0x0040_0000_0020_0745);
        let fwb = Pte::leaf(
            Pa::new(0x1000),
            Level::L3,
            LeafAttrs::normal(S2Perms::RWX),
            AttrEncoding { fwb: true },
        );
        assert_eq!(fwb.raw(), 0x17db);
        assert_eq!(Pte::table(Pa::new(0x1234_5000)).raw(), 0x1234_5003);
    }

    #[test]
    fn encoder_and_attr_bits_agree_with_leaf() {
        let attrs = LeafAttrs::device(S2Perms::RX).with_sw(SwBits::new(9).unwrap());
        let e = LeafEncoder::new(attrs, ENC);
        for (level, pa) in [
            (Level::L1, 0x4000_0000),
            (Level::L2, 0x20_0000),
            (Level::L3, 0x1000),
        ] {
            let pte = Pte::leaf(Pa::new(pa), level, attrs, ENC);
            assert_eq!(e.leaf(Pa::new(pa), level), pte);
            let other = Pte::leaf(Pa::new(pa), level, LeafAttrs::normal(S2Perms::R), ENC);
            assert_eq!(other.with_attr_bits(pte.attr_bits()), pte);
        }
        assert_eq!(
            Pte::table(Pa::new(0x7000)).next_table(Level::L2),
            Some(Pa::new(0x7000))
        );
        assert_eq!(Pte::table(Pa::new(0x7000)).next_table(Level::L3), None);
    }

    #[test]
    fn level_dependent_decoding() {
        let raw = Pte::table(Pa::new(0x5000));
        assert_eq!(raw.decode(Level::L2), Entry::Table(Pa::new(0x5000)));
        // The same bits at level 3 are a page.
        assert!(matches!(raw.decode(Level::L3), Entry::Leaf { pa, .. } if pa == Pa::new(0x5000)));
        assert!(raw.is_table(Level::L0) && !raw.is_table(Level::L3));
    }

    #[test]
    fn annotations_survive_in_invalid_entries() {
        let a = Annotation::new(Annotation::MAX).unwrap();
        let pte = Pte::invalid(a);
        assert!(!pte.is_valid());
        assert_eq!(pte.decode(Level::L1), Entry::Invalid(a));
        assert_eq!(Annotation::new(Annotation::MAX + 1), None);
        assert_eq!(SwBits::new(16), None);
    }

    #[test]
    fn bbm_needed_only_for_address_size_or_type_changes() {
        let rw = LeafAttrs::normal(S2Perms::RW);
        let leaf = |pa, attrs| Entry::Leaf {
            pa: Pa::new(pa),
            attrs,
        };
        assert_eq!(
            classify_change(Entry::Invalid(Annotation::NONE), leaf(0, rw)),
            Change::Install
        );
        assert_eq!(classify_change(leaf(0, rw), leaf(0, rw)), Change::Unchanged);
        let sw = rw.with_sw(SwBits::new(3).unwrap());
        assert_eq!(classify_change(leaf(0, rw), leaf(0, sw)), Change::Unchanged);
        let ro = rw.with_perms(S2Perms::R);
        assert_eq!(classify_change(leaf(0, ro), leaf(0, rw)), Change::Relax);
        assert_eq!(classify_change(leaf(0, rw), leaf(0, ro)), Change::Restrict);
        // Losing W while gaining X still removes a permission.
        let rx = rw.with_perms(S2Perms::RX);
        assert_eq!(classify_change(leaf(0, rw), leaf(0, rx)), Change::Restrict);
        assert!(needs_bbm(leaf(0, rw), leaf(0x1000, rw)));
        assert!(needs_bbm(
            leaf(0, rw),
            leaf(0, LeafAttrs::device(S2Perms::RW))
        ));
        assert!(needs_bbm(leaf(0, rw), Entry::Table(Pa::new(0x1000))));
        assert!(needs_bbm(Entry::Table(Pa::new(0x1000)), leaf(0, rw)));
        assert!(needs_bbm(
            Entry::Table(Pa::new(0x1000)),
            Entry::Table(Pa::new(0x2000))
        ));
        assert!(!needs_bbm(leaf(0, rw), Entry::Invalid(Annotation::NONE)));
        assert_eq!(
            classify_change(leaf(0, rw), Entry::Invalid(Annotation::NONE)),
            Change::Remove
        );
    }
}
