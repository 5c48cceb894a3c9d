//! The streaming snapshot writer: each section goes to a [`Sink`] as soon as it is given, so
//! the writer holds nothing but counters and the running CRC.

use core::fmt;

use super::crc::{Crc32, combine, crc32};
use super::format::{
    ConfigError, DeviceKind, Header, PAGE_SIZE, PAGES_PREFIX_LEN, SECTION_HEADER_LEN, SectionKind,
    VCPU_LEN, VcpuState, pstate_mode_ok, section_header, trailer,
};

/// Where snapshot bytes go (a semihosting file, a buffer).
pub trait Sink {
    type Error;
    /// Appends all of `bytes`, or fails.
    ///
    /// # Errors
    /// The sink's own.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl<T: Sink + ?Sized> Sink for &mut T {
    type Error = T::Error;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        (**self).write(bytes)
    }
}

impl Sink for alloc::vec::Vec<u8> {
    type Error = core::convert::Infallible;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Why the writer refused a call. Requests that would make a file the reader refuses are
/// refused here, before anything is written for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError<E> {
    /// The sink failed; the file is incomplete.
    Sink(E),
    /// An earlier call failed part-way; nothing more is written.
    Poisoned,
    /// The header's VM configuration is out of range.
    Config(ConfigError),
    /// vCPU index not below the header's vCPU count.
    VcpuIndex {
        index: u32,
        vcpus: u32,
    },
    VcpuTwice {
        index: u32,
    },
    /// PSTATE.M is not EL0t, EL1t or EL1h.
    Pstate {
        index: u32,
        pstate: u64,
    },
    /// `finish` without this vCPU's section.
    MissingVcpu {
        index: u32,
    },
    DeviceTwice {
        kind: DeviceKind,
    },
    /// Page data must be a non-empty multiple of the page size.
    PageData {
        len: usize,
    },
    /// The run is not inside the VM's RAM.
    RunOutsideRam {
        first_gfn: u64,
        count: u64,
    },
}

impl<E: fmt::Debug> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sink(e) => write!(f, "cannot write the snapshot: the sink failed ({e:?})"),
            Self::Poisoned => write!(
                f,
                "cannot continue the snapshot: an earlier write failed part-way"
            ),
            Self::Config(e) => write!(f, "cannot start a snapshot: {e}"),
            Self::VcpuIndex { index, vcpus } => {
                write!(f, "cannot save vCPU {index}: the VM has {vcpus} vCPUs")
            }
            Self::VcpuTwice { index } => {
                write!(f, "cannot save vCPU {index} twice in one snapshot")
            }
            Self::Pstate { index, pstate } => write!(
                f,
                "cannot save vCPU {index}: PSTATE {pstate:#x} is not an EL0/EL1 AArch64 mode"
            ),
            Self::MissingVcpu { index } => {
                write!(f, "cannot finish the snapshot: vCPU {index} was not saved")
            }
            Self::DeviceTwice { kind } => write!(
                f,
                "cannot save the {} state twice in one snapshot",
                kind.section()
            ),
            Self::PageData { len } => write!(
                f,
                "cannot save {len} bytes as pages: runs are a non-empty multiple of {PAGE_SIZE} bytes"
            ),
            Self::RunOutsideRam { first_gfn, count } => write!(
                f,
                "cannot save {count} pages at guest frame {first_gfn:#x}: they are not all in the VM's RAM"
            ),
        }
    }
}

/// What a finished snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Sections written (vCPUs, devices, page runs).
    pub sections: u64,
    pub pages: u64,
    /// File length.
    pub bytes: u64,
    /// The trailer's CRC (of everything before the trailer).
    pub crc: u32,
}

/// Writes one snapshot: [`SnapshotWriter::begin`], any sequence of [`SnapshotWriter::vcpu`]
/// (each vCPU exactly once), [`SnapshotWriter::device`] (each device at most once) and
/// [`SnapshotWriter::pages`], then [`SnapshotWriter::finish`]. Pass `&mut sink` to keep the
/// sink after `finish`.
pub struct SnapshotWriter<S: Sink> {
    sink: S,
    header: Header,
    /// CRC-32 of every byte written so far.
    crc: Crc32,
    /// Bytes written so far.
    bytes: u64,
    sections: u64,
    pages: u64,
    vcpus_seen: u128,
    devices_seen: [bool; 3],
    poisoned: bool,
}

impl<S: Sink> SnapshotWriter<S> {
    /// Validates `header` and writes it.
    ///
    /// # Errors
    /// [`WriteError::Config`], [`WriteError::Sink`].
    pub fn begin(sink: S, header: &Header) -> Result<Self, WriteError<S::Error>> {
        header.config.validate().map_err(WriteError::Config)?;
        let mut w = Self {
            sink,
            header: *header,
            crc: Crc32::new(),
            bytes: 0,
            sections: 0,
            pages: 0,
            vcpus_seen: 0,
            devices_seen: [false; 3],
            poisoned: false,
        };
        let h = header.encode();
        w.emit(&h)?;
        Ok(w)
    }

    /// The header this snapshot was begun with.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Writes a VCPU section.
    ///
    /// # Errors
    /// [`WriteError::VcpuIndex`], [`WriteError::VcpuTwice`], [`WriteError::Pstate`], sink
    /// errors.
    pub fn vcpu(&mut self, state: &VcpuState) -> Result<(), WriteError<S::Error>> {
        self.usable()?;
        let (index, vcpus) = (state.index, self.header.config.vcpus);
        if index >= vcpus {
            return Err(WriteError::VcpuIndex { index, vcpus });
        }
        if self.vcpus_seen & (1 << index) != 0 {
            return Err(WriteError::VcpuTwice { index });
        }
        if !pstate_mode_ok(state.pstate) {
            return Err(WriteError::Pstate {
                index,
                pstate: state.pstate,
            });
        }
        let payload = state.encode();
        self.section(SectionKind::Vcpu, &[&payload])?;
        self.vcpus_seen |= 1 << index;
        Ok(())
    }

    /// Writes a device's state blob (its `save_state` output).
    ///
    /// # Errors
    /// [`WriteError::DeviceTwice`], sink errors.
    pub fn device(&mut self, kind: DeviceKind, state: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.usable()?;
        if self.devices_seen[kind.index()] {
            return Err(WriteError::DeviceTwice { kind });
        }
        self.section(kind.section(), &[state])?;
        self.devices_seen[kind.index()] = true;
        Ok(())
    }

    /// Writes a PAGES section: `data.len() / 4096` pages starting at guest frame `first_gfn`.
    /// `data` must not change during the call (copy pages of a running guest into a buffer
    /// first): it is read once for the CRC and once for the sink.
    ///
    /// # Errors
    /// [`WriteError::PageData`], [`WriteError::RunOutsideRam`], sink errors.
    pub fn pages(&mut self, first_gfn: u64, data: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.usable()?;
        if data.is_empty() || !data.len().is_multiple_of(PAGE_SIZE) {
            return Err(WriteError::PageData { len: data.len() });
        }
        let count = (data.len() / PAGE_SIZE) as u64;
        let ram = self.header.config.ram_gfns();
        if first_gfn < ram.start || first_gfn.checked_add(count).is_none_or(|e| e > ram.end) {
            return Err(WriteError::RunOutsideRam { first_gfn, count });
        }
        let mut prefix = [0u8; PAGES_PREFIX_LEN];
        prefix[..8].copy_from_slice(&first_gfn.to_le_bytes());
        prefix[8..].copy_from_slice(&count.to_le_bytes());
        self.section(SectionKind::Pages, &[&prefix, data])?;
        self.pages += count;
        Ok(())
    }

    /// Checks every vCPU was saved and writes the trailer.
    ///
    /// # Errors
    /// [`WriteError::MissingVcpu`], sink errors.
    pub fn finish(mut self) -> Result<Summary, WriteError<S::Error>> {
        self.usable()?;
        if let Some(index) =
            (0..self.header.config.vcpus).find(|&i| self.vcpus_seen & (1 << i) == 0)
        {
            return Err(WriteError::MissingVcpu { index });
        }
        let crc = self.crc.value();
        let t = trailer(self.sections, self.pages, crc);
        self.emit(&t)?;
        Ok(Summary {
            sections: self.sections,
            pages: self.pages,
            bytes: self.bytes,
            crc,
        })
    }

    fn usable(&self) -> Result<(), WriteError<S::Error>> {
        if self.poisoned {
            Err(WriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// One section whose payload is `parts` concatenated: its CRC first (one pass), then the
    /// bytes, the file CRC extended by [`combine`] instead of a second pass.
    fn section(&mut self, kind: SectionKind, parts: &[&[u8]]) -> Result<(), WriteError<S::Error>> {
        let mut payload = Crc32::new();
        let mut len = 0u64;
        for p in parts {
            payload.update(p);
            len += p.len() as u64;
        }
        let head = section_header(kind, len, 0);
        let crc = combine(crc32(&head[..16]), payload.value(), len);
        let head = section_header(kind, len, crc);
        debug_assert_eq!(head.len(), SECTION_HEADER_LEN);
        debug_assert!(kind != SectionKind::Vcpu || len == VCPU_LEN as u64);
        self.emit(&head)?;
        for p in parts {
            self.raw(p)?;
        }
        let so_far = self.crc.value();
        self.crc = Crc32::resume(combine(so_far, payload.value(), len));
        self.sections += 1;
        Ok(())
    }

    /// Writes bytes and folds them into the file CRC.
    fn emit(&mut self, bytes: &[u8]) -> Result<(), WriteError<S::Error>> {
        self.raw(bytes)?;
        self.crc.update(bytes);
        Ok(())
    }

    /// Writes bytes without touching the CRC (the caller accounts for them).
    fn raw(&mut self, bytes: &[u8]) -> Result<(), WriteError<S::Error>> {
        if let Err(e) = self.sink.write(bytes) {
            self.poisoned = true;
            return Err(WriteError::Sink(e));
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}
