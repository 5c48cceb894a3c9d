//! The snapshot file's records as typed values, and their fixed-size little-endian encodings
//! (layouts in the module doc of [`crate::snapshot`]). Only this file knows byte offsets.

use core::fmt;

use super::crc::crc32;

/// File magic, the first eight bytes.
pub const MAGIC: [u8; 8] = *b"HYPSNAP\0";
/// Trailer magic, the last record's first eight bytes.
pub const TRAILER_MAGIC: [u8; 8] = *b"HYPSEND\0";
/// The format version this code writes and the only one it reads.
pub const VERSION: u32 = 3;
/// Bytes in the version-1 header, its CRC included.
pub const HEADER_LEN: usize = 120;
/// Bytes in a section header.
pub const SECTION_HEADER_LEN: usize = 24;
/// Bytes in the trailer.
pub const TRAILER_LEN: usize = 32;
/// Guest page size; page runs hold whole pages.
pub const PAGE_SIZE: usize = 4096;
/// Bytes before a page run's data: first guest frame number and page count.
pub const PAGES_PREFIX_LEN: usize = 16;
/// Most vCPUs a snapshot describes: the vGIC's limit (`hyp` asserts at compile time that its
/// vGIC agrees).
pub const MAX_VCPUS: u32 = 128;
/// Bytes in a VM name field.
pub const NAME_LEN: usize = 32;

const KIND_FULL: u32 = 1;
const KIND_DIFF: u32 = 2;

/// What kind of snapshot a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every populated page of the VM.
    Full,
    /// Only the pages written since snapshot `base_id`; applied on top of it.
    Diff { base_id: u64 },
}

/// A VM name: up to [`NAME_LEN`] bytes of UTF-8 without NUL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VmName {
    bytes: [u8; NAME_LEN],
    len: u8,
}

impl VmName {
    /// `None` when `name` is longer than [`NAME_LEN`] bytes or contains NUL.
    pub fn new(name: &str) -> Option<Self> {
        if name.len() > NAME_LEN || name.bytes().any(|b| b == 0) {
            return None;
        }
        let mut bytes = [0; NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self {
            bytes,
            len: name.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from a `&str` or validated UTF-8.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The NUL-padded field.
    pub const fn field(&self) -> [u8; NAME_LEN] {
        self.bytes
    }

    /// Decodes a NUL-padded field: UTF-8 up to the first NUL, only NULs after it.
    pub fn from_field(field: [u8; NAME_LEN]) -> Option<Self> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if field[len..].iter().any(|&b| b != 0) {
            return None;
        }
        core::str::from_utf8(&field[..len]).ok()?;
        Some(Self {
            bytes: field,
            len: len as u8,
        })
    }
}

impl fmt::Debug for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The VM a snapshot belongs to; every snapshot of a chain has the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub name: VmName,
    /// vCPUs 0..vcpus, 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest-physical base of RAM, page-aligned.
    pub ram_base: u64,
    /// Bytes of RAM, a non-zero multiple of the page size.
    pub ram_size: u64,
    /// CNTFRQ_EL0 the guest sees, in Hz (non-zero).
    pub counter_freq: u64,
}

impl VmConfig {
    /// The guest frame numbers of RAM: `first..end`.
    pub fn ram_gfns(&self) -> core::ops::Range<u64> {
        let first = self.ram_base / PAGE_SIZE as u64;
        first..first + self.ram_size / PAGE_SIZE as u64
    }

    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::VcpuCount { vcpus: self.vcpus });
        }
        let page = PAGE_SIZE as u64;
        if self.ram_size == 0
            || !self.ram_base.is_multiple_of(page)
            || !self.ram_size.is_multiple_of(page)
            || self.ram_base.checked_add(self.ram_size).is_none()
        {
            return Err(ConfigError::Ram {
                base: self.ram_base,
                size: self.ram_size,
            });
        }
        if self.counter_freq == 0 {
            return Err(ConfigError::CounterFrequency);
        }
        Ok(())
    }
}

/// A VM configuration field out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    VcpuCount {
        vcpus: u32,
    },
    Ram {
        base: u64,
        size: u64,
    },
    CounterFrequency,
    /// The name field is not NUL-padded UTF-8.
    Name,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VcpuCount { vcpus } => {
                write!(f, "a VM has 1 to {MAX_VCPUS} vCPUs, not {vcpus}")
            }
            Self::Ram { base, size } => write!(
                f,
                "RAM at {base:#x} of {size:#x} bytes is not a non-empty, page-aligned range"
            ),
            Self::CounterFrequency => write!(f, "the counter frequency is zero"),
            Self::Name => write!(f, "the VM name is not NUL-padded UTF-8"),
        }
    }
}

/// The file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Caller-chosen identity of this snapshot (what a diff names as its base).
    pub id: u64,
    pub kind: Kind,
    pub config: VmConfig,
    /// The guest's virtual counter (CNTVCT_EL0) when the vCPUs stopped.
    pub counter: u64,
    /// Pages were copied while the guest ran (live pre-copy): a GFN may be saved again by a
    /// later PAGES section, and the copy latest in the file is its contents. Without this, a
    /// GFN saved twice makes the file invalid.
    pub live: bool,
}

/// Header flag bit: [`Header::live`].
const FLAG_LIVE: u32 = 1;

/// What a header decodes to, before its fields are judged.
pub(crate) enum RawHeader {
    /// The magic is wrong.
    BadMagic([u8; 8]),
    /// Another format version: its header layout is unknown.
    Version(u32),
    /// This version but another header length.
    Length(u32),
    /// This version and the CRC over the first 116 bytes does not match.
    Crc {
        stored: u32,
        computed: u32,
    },
    /// Reserved bytes are not zero.
    Reserved {
        offset: usize,
    },
    /// Unknown header flags.
    Flags(u32),
    /// Kind field neither full nor diff, or a full snapshot naming a base.
    Kind {
        raw: u32,
        base_id: u64,
    },
    Config(ConfigError),
    Ok(Header),
}

impl Header {
    /// The 120-byte encoding: magic, version, header length, kind, flags, id, base id,
    /// name, vCPUs, reserved, RAM base, RAM size, counter, counter frequency, reserved, CRC.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let (kind, base) = match self.kind {
            Kind::Full => (KIND_FULL, 0),
            Kind::Diff { base_id } => (KIND_DIFF, base_id),
        };
        let c = &self.config;
        b[0..8].copy_from_slice(&MAGIC);
        put32(&mut b, 8, VERSION);
        put32(&mut b, 12, HEADER_LEN as u32);
        put32(&mut b, 16, kind);
        put32(&mut b, 20, if self.live { FLAG_LIVE } else { 0 });
        put64(&mut b, 24, self.id);
        put64(&mut b, 32, base);
        b[40..72].copy_from_slice(&c.name.field());
        put32(&mut b, 72, c.vcpus);
        put64(&mut b, 80, c.ram_base);
        put64(&mut b, 88, c.ram_size);
        put64(&mut b, 96, self.counter);
        put64(&mut b, 104, c.counter_freq);
        let crc = crc32(&b[..116]);
        put32(&mut b, 116, crc);
        b
    }

    /// Decodes the header at the start of `bytes`; `None` when `bytes` ends before the
    /// problem or the header does. Returns the first problem found; the version is judged
    /// before anything that depends on the layout.
    pub(crate) fn decode(bytes: &[u8]) -> Option<RawHeader> {
        let magic: [u8; 8] = bytes.get(0..8)?.try_into().ok()?;
        if magic != MAGIC {
            return Some(RawHeader::BadMagic(magic));
        }
        let version = get32(bytes, 8)?;
        if version != VERSION {
            return Some(RawHeader::Version(version));
        }
        let len = get32(bytes, 12)?;
        if len as usize != HEADER_LEN {
            return Some(RawHeader::Length(len));
        }
        let b = bytes.get(..HEADER_LEN)?;
        let (stored, computed) = (get32(b, 116)?, crc32(&b[..116]));
        if stored != computed {
            return Some(RawHeader::Crc { stored, computed });
        }
        if get32(b, 20)? & !FLAG_LIVE != 0 {
            return Some(RawHeader::Flags(get32(b, 20)?));
        }
        for off in [76, 112] {
            if get32(b, off)? != 0 {
                return Some(RawHeader::Reserved { offset: off });
            }
        }
        let (raw_kind, base_id) = (get32(b, 16)?, get64(b, 32)?);
        let kind = match (raw_kind, base_id) {
            (KIND_FULL, 0) => Kind::Full,
            (KIND_DIFF, base_id) => Kind::Diff { base_id },
            (raw, base_id) => return Some(RawHeader::Kind { raw, base_id }),
        };
        let Some(name) = VmName::from_field(b[40..72].try_into().ok()?) else {
            return Some(RawHeader::Config(ConfigError::Name));
        };
        let config = VmConfig {
            name,
            vcpus: get32(b, 72)?,
            ram_base: get64(b, 80)?,
            ram_size: get64(b, 88)?,
            counter_freq: get64(b, 104)?,
        };
        if let Err(e) = config.validate() {
            return Some(RawHeader::Config(e));
        }
        Some(RawHeader::Ok(Header {
            id: get64(b, 24)?,
            kind,
            config,
            counter: get64(b, 96)?,
            live: get32(b, 20)? & FLAG_LIVE != 0,
        }))
    }
}

/// Section types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionKind {
    Vcpu,
    Vgic,
    Uart,
    Pages,
    Timer,
}

impl SectionKind {
    pub const fn raw(self) -> u32 {
        match self {
            Self::Vcpu => 1,
            Self::Vgic => 2,
            Self::Uart => 3,
            Self::Pages => 4,
            Self::Timer => 5,
        }
    }

    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Vcpu),
            2 => Some(Self::Vgic),
            3 => Some(Self::Uart),
            4 => Some(Self::Pages),
            5 => Some(Self::Timer),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Vcpu => "VCPU",
            Self::Vgic => "VGIC",
            Self::Uart => "UART",
            Self::Pages => "PAGES",
            Self::Timer => "TIMER",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The device models whose state is an opaque section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Vgic,
    Uart,
    /// The guest's virtual counter (u64) when its vCPUs stopped; overrides the header's value,
    /// which a live snapshot writes before its pre-copy.
    Timer,
}

impl DeviceKind {
    pub const ALL: [Self; 3] = [Self::Vgic, Self::Uart, Self::Timer];

    pub const fn section(self) -> SectionKind {
        match self {
            Self::Vgic => SectionKind::Vgic,
            Self::Uart => SectionKind::Uart,
            Self::Timer => SectionKind::Timer,
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Vgic => 0,
            Self::Uart => 1,
            Self::Timer => 2,
        }
    }
}

/// A section header: type, flags (0 in this version), payload length, and the CRC-32 of the
/// first 16 header bytes followed by the payload; then 4 reserved zero bytes.
pub(crate) fn section_header(kind: SectionKind, len: u64, crc: u32) -> [u8; SECTION_HEADER_LEN] {
    let mut b = [0u8; SECTION_HEADER_LEN];
    put32(&mut b, 0, kind.raw());
    put64(&mut b, 8, len);
    put32(&mut b, 16, crc);
    b
}

/// The trailer: magic, section count, page count, CRC-32 of every byte before the trailer,
/// 4 reserved zero bytes.
pub(crate) fn trailer(sections: u64, pages: u64, crc: u32) -> [u8; TRAILER_LEN] {
    let mut b = [0u8; TRAILER_LEN];
    b[0..8].copy_from_slice(&TRAILER_MAGIC);
    put64(&mut b, 8, sections);
    put64(&mut b, 16, pages);
    put32(&mut b, 24, crc);
    b
}

/// Whether a vCPU runs (PSCI view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PowerState {
    #[default]
    Off,
    On,
}

macro_rules! el1_regs {
    ($($name:ident),* $(,)?) => {
        /// The EL1 system registers of a vCPU, in file order (the field order below).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct El1Regs {
            $(pub $name: u64,)*
        }

        impl El1Regs {
            /// Register names in file order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            pub const COUNT: usize = Self::NAMES.len();

            fn to_array(self) -> [u64; Self::COUNT] {
                [$(self.$name),*]
            }

            fn from_array(a: [u64; Self::COUNT]) -> Self {
                let [$($name),*] = a;
                Self { $($name),* }
            }
        }
    };
}

el1_regs!(
    sctlr_el1,
    ttbr0_el1,
    ttbr1_el1,
    tcr_el1,
    mair_el1,
    amair_el1,
    vbar_el1,
    contextidr_el1,
    tpidr_el0,
    tpidr_el1,
    tpidrro_el0,
    esr_el1,
    far_el1,
    afsr0_el1,
    afsr1_el1,
    par_el1,
    cpacr_el1,
    cntkctl_el1,
    cntv_ctl_el0,
    cntv_cval_el0,
    mdscr_el1,
    csselr_el1,
    sp_el1,
    elr_el1,
    spsr_el1,
    apiakeylo_el1,
    apiakeyhi_el1,
    apibkeylo_el1,
    apibkeyhi_el1,
    apdakeylo_el1,
    apdakeyhi_el1,
    apdbkeylo_el1,
    apdbkeyhi_el1,
    apgakeylo_el1,
    apgakeyhi_el1,
    cntp_ctl_el0,
    cntp_cval_el0,
);

const _: () = assert!(El1Regs::COUNT == 37);

/// The GIC virtual CPU interface registers of a vCPU (the 64-bit values MRS reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GicCpuIf {
    pub ich_vmcr: u64,
    pub ich_ap0r: [u64; 4],
    pub ich_ap1r: [u64; 4],
}

/// Everything of one vCPU a restore needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    pub index: u32,
    pub power: PowerState,
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub pc: u64,
    /// SPSR_EL2 layout; M must be EL0t, EL1t or EL1h (AArch64).
    pub pstate: u64,
    pub el1: El1Regs,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
    pub gic: GicCpuIf,
}

/// Bytes in a VCPU section's payload.
pub const VCPU_LEN: usize = 8 + 8 * (31 + 3) + 8 * El1Regs::COUNT + 16 * 32 + 8 * 2 + 8 * 9;
const _: () = assert!(VCPU_LEN == 1176);

/// PSTATE.M values a vCPU may be resumed in: EL0t, EL1t, EL1h (AArch64, M[4] = 0).
pub(crate) fn pstate_mode_ok(pstate: u64) -> bool {
    matches!(pstate & 0x1f, 0b00000 | 0b00100 | 0b00101)
}

/// Why a VCPU payload was refused.
pub(crate) enum VcpuDecodeError {
    Power(u32),
    Pstate(u64),
}

impl VcpuState {
    pub fn encode(&self) -> [u8; VCPU_LEN] {
        let mut b = [0u8; VCPU_LEN];
        let mut w = Writer { b: &mut b, at: 0 };
        w.u32(self.index);
        w.u32(match self.power {
            PowerState::Off => 0,
            PowerState::On => 1,
        });
        for &r in self
            .x
            .iter()
            .chain(&[self.sp_el0, self.pc, self.pstate])
            .chain(&self.el1.to_array())
        {
            w.u64(r);
        }
        for &q in &self.q {
            w.u64(q as u64);
            w.u64((q >> 64) as u64);
        }
        for &r in [self.fpcr, self.fpsr, self.gic.ich_vmcr]
            .iter()
            .chain(&self.gic.ich_ap0r)
            .chain(&self.gic.ich_ap1r)
        {
            w.u64(r);
        }
        debug_assert_eq!(w.at, VCPU_LEN);
        b
    }

    /// Decodes a payload of exactly [`VCPU_LEN`] bytes.
    pub(crate) fn decode(p: &[u8; VCPU_LEN]) -> Result<Self, VcpuDecodeError> {
        let mut r = Reader { b: p, at: 0 };
        let index = r.u32();
        let power = match r.u32() {
            0 => PowerState::Off,
            1 => PowerState::On,
            other => return Err(VcpuDecodeError::Power(other)),
        };
        let mut s = Self {
            index,
            power,
            ..Self::default()
        };
        for x in &mut s.x {
            *x = r.u64();
        }
        s.sp_el0 = r.u64();
        s.pc = r.u64();
        s.pstate = r.u64();
        if !pstate_mode_ok(s.pstate) {
            return Err(VcpuDecodeError::Pstate(s.pstate));
        }
        let mut el1 = [0u64; El1Regs::COUNT];
        for v in &mut el1 {
            *v = r.u64();
        }
        s.el1 = El1Regs::from_array(el1);
        for q in &mut s.q {
            let lo = r.u64();
            *q = u128::from(lo) | u128::from(r.u64()) << 64;
        }
        s.fpcr = r.u64();
        s.fpsr = r.u64();
        s.gic.ich_vmcr = r.u64();
        for v in s.gic.ich_ap0r.iter_mut().chain(&mut s.gic.ich_ap1r) {
            *v = r.u64();
        }
        Ok(s)
    }
}

/// Sequential little-endian writes into a buffer sized for them.
struct Writer<'b> {
    b: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn u32(&mut self, v: u32) {
        put32(self.b, self.at, v);
        self.at += 4;
    }

    fn u64(&mut self, v: u64) {
        put64(self.b, self.at, v);
        self.at += 8;
    }
}

/// Sequential little-endian reads from a fixed-size record (reads past its end give 0; the
/// record sizes are constants checked against the layout at compile time).
struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = get32(self.b, self.at).unwrap_or(0);
        self.at += 4;
        v
    }

    fn u64(&mut self) -> u64 {
        let v = get64(self.b, self.at).unwrap_or(0);
        self.at += 8;
        v
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    if let Some(d) = b.get_mut(at..at + 8) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// The little-endian u32 at `at`, `None` past the end.
pub(crate) fn get32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// The little-endian u64 at `at`, `None` past the end.
pub(crate) fn get64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}
