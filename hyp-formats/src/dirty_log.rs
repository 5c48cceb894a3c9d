//! The `hyp.dirty-log=FILE` file: the pages of each periodic dirty harvest
//! (`hyp.dirty-harvest=`), which the hypervisor's monitor appends to a host file so that a
//! host-side checker (`cargo xtask dirty-check`) can compare them with what a guest says it
//! wrote. The hypervisor writes it with [`Header::encode`] and [`Record::encode_into`]; the
//! checker reads it with [`DirtyLog::parse`]. Only this file knows byte offsets.
//!
//! # Format, version 1
//!
//! All integers are little-endian. A guest frame number (GFN) is a guest-physical address
//! divided by 4096. A file is a header, then one record per harvest in the order they ran:
//!
//! ## Header (48 bytes)
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic `"HYPDLOG\0"` |
//! | 8 | 4 | version: 1 |
//! | 12 | 4 | header length: 48 |
//! | 16 | 8 | first GFN of guest RAM |
//! | 24 | 8 | guest RAM pages, non-zero |
//! | 32 | 8 | counter frequency in Hz, non-zero |
//! | 40 | 8 | reserved, 0 |
//!
//! ## Record (32 bytes, then the bitmap)
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | start: the guest's virtual counter just before the harvest began write-protecting |
//! | 8 | 8 | end: the guest's virtual counter just after the harvest finished |
//! | 16 | 8 | pages harvested: the number of bits set in the bitmap |
//! | 24 | 8 | words in the bitmap: RAM pages / 64, rounded up |
//! | 32 | 8 × words | bitmap: bit `i` of word `w` set when GFN `first + 64 w + i` was written since the previous harvest |
//!
//! Harvests do not overlap: a record starts no earlier than the previous one ended. A run that
//! was cut short (the VM killed mid-write) may end inside a record; a reader ignores that
//! partial record.
//!
//! ## A reader refuses
//! A file shorter than the header; wrong magic; another version; another header length; a
//! header with no RAM pages or a zero counter frequency; a record whose word count does not
//! match the RAM, that ends before it starts or starts before the previous one ended, with
//! bits set past the last RAM page, or whose page count differs from the bits set.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// File magic, the first eight bytes.
pub const MAGIC: [u8; 8] = *b"HYPDLOG\0";
/// The format version written, and the only one read.
pub const VERSION: u32 = 1;
/// Bytes in the header.
pub const HEADER_LEN: usize = 48;
/// Bytes in a record before its bitmap: start, end, count, words.
pub const RECORD_HEAD_LEN: usize = 32;

/// The header: which guest RAM the bitmaps cover, and how fast the counter in the records runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub first_gfn: u64,
    pub pages: u64,
    pub frequency: u64,
}

impl Header {
    /// Bitmap words per record.
    pub fn words(&self) -> u64 {
        self.pages.div_ceil(64)
    }

    /// The header as the file starts with it.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.first_gfn.to_le_bytes());
        out[24..32].copy_from_slice(&self.pages.to_le_bytes());
        out[32..40].copy_from_slice(&self.frequency.to_le_bytes());
        // 40..48: reserved, left 0.
        out
    }

    /// Reads and checks the header at the start of `bytes`.
    ///
    /// # Errors
    /// [`DirtyLogError::TruncatedHeader`], [`DirtyLogError::BadMagic`],
    /// [`DirtyLogError::Version`], [`DirtyLogError::HeaderLen`] or
    /// [`DirtyLogError::EmptyHeader`], checked in that order.
    pub fn decode(bytes: &[u8]) -> Result<Self, DirtyLogError> {
        let Some(head) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(DirtyLogError::TruncatedHeader { len: bytes.len() });
        };
        let magic = *head
            .first_chunk::<8>()
            .expect("the header is longer than its magic");
        if magic != MAGIC {
            return Err(DirtyLogError::BadMagic(magic));
        }
        let version = u32_at(head, 8);
        if version != VERSION {
            return Err(DirtyLogError::Version(version));
        }
        let header_len = u32_at(head, 12);
        if header_len as usize != HEADER_LEN {
            return Err(DirtyLogError::HeaderLen(header_len));
        }
        let header = Self {
            first_gfn: u64_at(head, 16),
            pages: u64_at(head, 24),
            frequency: u64_at(head, 32),
        };
        if header.pages == 0 || header.frequency == 0 {
            return Err(DirtyLogError::EmptyHeader {
                pages: header.pages,
                frequency: header.frequency,
            });
        }
        Ok(header)
    }
}

/// One harvest's record as the hypervisor writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The guest's virtual counter just before the harvest began write-protecting.
    pub start: u64,
    /// The guest's virtual counter just after the harvest finished.
    pub end: u64,
    /// Pages harvested.
    pub count: u64,
    /// One bit per RAM page, from the header's first GFN.
    pub bits: &'a [u64],
}

impl Record<'_> {
    /// Bytes [`Self::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEAD_LEN + 8 * self.bits.len()
    }

    /// Appends the record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for w in [self.start, self.end, self.count, self.bits.len() as u64] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for w in self.bits {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
}

/// One harvest as read back from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Harvest {
    pub start: u64,
    pub end: u64,
    bits: Vec<u64>,
}

impl Harvest {
    /// Whether the frame `frame` pages into guest RAM was dirty.
    pub fn dirty(&self, frame: u64) -> bool {
        self.bits
            .get((frame / 64) as usize)
            .is_some_and(|w| w >> (frame % 64) & 1 != 0)
    }
}

/// A whole file, checked.
#[derive(Debug)]
pub struct DirtyLog {
    pub header: Header,
    /// In file order, which the parser checks is time order.
    pub harvests: Vec<Harvest>,
    /// Bytes of a partial last record, ignored.
    pub trailing: usize,
}

impl DirtyLog {
    /// Reads and checks a whole file.
    ///
    /// # Errors
    /// Any [`DirtyLogError`]: the header's errors from [`Header::decode`], then
    /// [`DirtyLogError::Record`] for the first malformed record.
    pub fn parse(bytes: &[u8]) -> Result<Self, DirtyLogError> {
        let header = Header::decode(bytes)?;
        let words = header.words();
        let mut harvests: Vec<Harvest> = Vec::new();
        let mut at = HEADER_LEN;
        loop {
            let rest = bytes.len() - at;
            if rest < RECORD_HEAD_LEN {
                return Ok(Self {
                    header,
                    harvests,
                    trailing: rest,
                });
            }
            let [start, end, count, n] = [0, 8, 16, 24].map(|o| u64_at(bytes, at + o));
            let index = harvests.len();
            let bad = |why| DirtyLogError::Record { index, at, why };
            if n != words {
                return Err(bad(RecordError::WordCount {
                    words: n,
                    pages: header.pages,
                    want: words,
                }));
            }
            let len = RECORD_HEAD_LEN + 8 * words as usize;
            if rest < len {
                return Ok(Self {
                    header,
                    harvests,
                    trailing: rest,
                });
            }
            let bits: Vec<u64> = (0..words as usize)
                .map(|w| u64_at(bytes, at + RECORD_HEAD_LEN + 8 * w))
                .collect();
            if end < start {
                return Err(bad(RecordError::EndsBeforeStart { start, end }));
            }
            if let Some(prev) = harvests.last()
                && start < prev.end
            {
                return Err(bad(RecordError::StartsBeforePrevious {
                    start,
                    previous_end: prev.end,
                }));
            }
            let tail = header.pages % 64;
            if tail != 0 && bits[words as usize - 1] >> tail != 0 {
                return Err(bad(RecordError::BitsBeyondRam));
            }
            let set: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
            if set != count {
                return Err(bad(RecordError::Count { count, set }));
            }
            harvests.push(Harvest { start, end, bits });
            at += len;
        }
    }
}

/// Why a file is not a dirty log this reader takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirtyLogError {
    /// The file is shorter than the header; `len` is its length in bytes.
    TruncatedHeader { len: usize },
    /// The first eight bytes, which are not [`MAGIC`].
    BadMagic([u8; 8]),
    /// A version other than [`VERSION`].
    Version(u32),
    /// A header length other than [`HEADER_LEN`].
    HeaderLen(u32),
    /// A header with no RAM pages or a zero counter frequency.
    EmptyHeader { pages: u64, frequency: u64 },
    /// Record `index` (0 is the first), which starts at byte `at`, is malformed.
    Record {
        index: usize,
        at: usize,
        why: RecordError,
    },
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// `words` bitmap words, where the header's `pages` take `want`.
    WordCount {
        words: u64,
        pages: u64,
        want: u64,
    },
    EndsBeforeStart {
        start: u64,
        end: u64,
    },
    /// Harvests cannot overlap: this one starts before the previous one ended.
    StartsBeforePrevious {
        start: u64,
        previous_end: u64,
    },
    /// A bit set for a page past the end of guest RAM.
    BitsBeyondRam,
    /// The record's page count is not the number of bits set.
    Count {
        count: u64,
        set: u64,
    },
}

impl fmt::Display for DirtyLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader { len } => write!(
                f,
                "truncated header: the file has {len} bytes, the header takes {HEADER_LEN}"
            ),
            Self::BadMagic(magic) => write!(
                f,
                "bad magic {:?} (expected \"HYPDLOG\\0\"): not a dirty-log file",
                String::from_utf8_lossy(magic)
            ),
            Self::Version(version) => write!(
                f,
                "version {version}, and this checker reads version {VERSION}"
            ),
            Self::HeaderLen(len) => write!(
                f,
                "header length {len}, and version {VERSION} has {HEADER_LEN}"
            ),
            Self::EmptyHeader { pages, frequency } => write!(
                f,
                "the header says {pages} guest pages and a counter of {frequency} Hz"
            ),
            Self::Record { index, at, why } => write!(f, "record {index} (at byte {at}): {why}"),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WordCount { words, pages, want } => {
                write!(f, "{words} bitmap words, and {pages} pages take {want}")
            }
            Self::EndsBeforeStart { start, end } => {
                write!(f, "ends ({end}) before it starts ({start})")
            }
            Self::StartsBeforePrevious {
                start,
                previous_end,
            } => write!(
                f,
                "starts at {start}, before the previous harvest ended ({previous_end})"
            ),
            Self::BitsBeyondRam => f.write_str("bits set beyond the last guest page"),
            Self::Count { count, set } => write!(f, "count {count}, and {set} bits are set"),
        }
    }
}

/// The little-endian u32 at byte `at`; the caller has checked that `bytes` holds it.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at byte `at`; the caller has checked that `bytes` holds it.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests;
