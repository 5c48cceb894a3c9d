//! The flat arm64 Image that QEMU `-kernel` and U-Boot `booti` load: the ELF's PT_LOAD segments
//! laid out by physical address from the lowest one, whose first bytes are the arm64 Linux Image
//! header. Loaders trust that header (magic, image_size) to place and size the image, so a
//! malformed one is refused here rather than turning into a hang at boot.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object};
use std::fmt;

/// Where `ARM\x64` sits in the header (Documentation/arch/arm64/booting.rst).
pub const MAGIC_OFFSET: usize = 0x38;
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// The little-endian u64 giving the memory the image needs from its start, BSS included.
const IMAGE_SIZE_OFFSET: usize = 16;
const HEADER_LEN: usize = 64;
/// A wider span means a stray segment (say, one linked at a device address), not a real image.
const MAX_SPAN: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlatImageError {
    NotElf(String),
    NotAarch64 { machine: u16, little_endian: bool },
    BadSegment(String),
    NoLoadSegment,
    Overlap { first: u64, second: u64 },
    TooLarge { span: u64 },
    TooShort { len: usize },
    BadMagic { found: [u8; 4] },
    ImageSizeTooSmall { image_size: u64, file_len: u64 },
}

impl fmt::Display for FlatImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf(e) => write!(f, "the file is not a 64-bit ELF ({e})"),
            Self::NotAarch64 {
                machine,
                little_endian,
            } => write!(
                f,
                "the ELF is not little-endian aarch64 (e_machine {machine}, {} endian); \
                 build it for aarch64-unknown-none-softfloat",
                if *little_endian { "little" } else { "big" }
            ),
            Self::BadSegment(e) => write!(f, "a PT_LOAD segment lies outside the file ({e})"),
            Self::NoLoadSegment => write!(f, "the ELF has no PT_LOAD segment with file contents"),
            Self::Overlap { first, second } => write!(
                f,
                "the PT_LOAD segments at physical addresses {first:#x} and {second:#x} overlap; \
                 check the linker script"
            ),
            Self::TooLarge { span } => write!(
                f,
                "the PT_LOAD segments span {span:#x} bytes, more than the {MAX_SPAN:#x} an image \
                 may take; a segment is probably linked at a wrong physical address"
            ),
            Self::TooShort { len } => write!(
                f,
                "the image is {len} bytes, too short for the {HEADER_LEN}-byte arm64 Image header"
            ),
            Self::BadMagic { found } => write!(
                f,
                "no arm64 Image header: expected magic \"ARM\\x64\" at offset {MAGIC_OFFSET:#x}, \
                 found {found:02x?}; the lowest PT_LOAD segment must start with the header"
            ),
            Self::ImageSizeTooSmall {
                image_size,
                file_len,
            } => write!(
                f,
                "the Image header's image_size ({image_size:#x}) is smaller than the image file \
                 ({file_len:#x} bytes); it must cover the whole image including BSS"
            ),
        }
    }
}

impl std::error::Error for FlatImageError {}

/// Lays out `elf`'s PT_LOAD file contents by physical address, zero-filling gaps, and checks
/// the result starts with a usable arm64 Image header. Memory-only tails (BSS) are not stored:
/// the header's image_size tells the loader how much memory to reserve for them.
pub fn flat_image(elf: &[u8]) -> Result<Vec<u8>, FlatImageError> {
    let file =
        ElfFile64::<Endianness>::parse(elf).map_err(|e| FlatImageError::NotElf(e.to_string()))?;
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian);
    if machine != elf::EM_AARCH64 || !file.is_little_endian() {
        return Err(FlatImageError::NotAarch64 {
            machine,
            little_endian: file.is_little_endian(),
        });
    }

    let mut segments = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let data = ph.data(endian, elf).map_err(|()| {
            FlatImageError::BadSegment(format!("at offset {:#x}", ph.p_offset(endian)))
        })?;
        segments.push((ph.p_paddr(endian), data));
    }
    segments.sort_by_key(|&(paddr, _)| paddr);
    let (Some(&(base, _)), Some(&(last, last_data))) = (segments.first(), segments.last()) else {
        return Err(FlatImageError::NoLoadSegment);
    };
    for pair in segments.windows(2) {
        let ((a, a_data), (b, _)) = (pair[0], pair[1]);
        if a.checked_add(a_data.len() as u64).is_none_or(|end| end > b) {
            return Err(FlatImageError::Overlap {
                first: a,
                second: b,
            });
        }
    }
    let span = last
        .checked_add(last_data.len() as u64)
        .map(|end| end - base)
        .filter(|&span| span <= MAX_SPAN)
        .ok_or(FlatImageError::TooLarge {
            span: (last - base).saturating_add(last_data.len() as u64),
        })?;

    let mut image = vec![0u8; span as usize];
    for (paddr, data) in segments {
        let at = (paddr - base) as usize;
        image[at..at + data.len()].copy_from_slice(data);
    }
    check_header(&image)?;
    Ok(image)
}

/// The checks a loader makes before trusting the image: the magic, and an image_size that
/// covers at least the file (QEMU reserves image_size bytes and places the DTB after them).
pub fn check_header(image: &[u8]) -> Result<(), FlatImageError> {
    if image.len() < HEADER_LEN {
        return Err(FlatImageError::TooShort { len: image.len() });
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(&image[MAGIC_OFFSET..MAGIC_OFFSET + 4]);
    if found != MAGIC {
        return Err(FlatImageError::BadMagic { found });
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&image[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8]);
    let image_size = u64::from_le_bytes(size);
    let file_len = image.len() as u64;
    if image_size < file_len {
        return Err(FlatImageError::ImageSizeTooSmall {
            image_size,
            file_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::elf::{FileHeader as WFileHeader, ProgramHeader as WProgramHeader, Writer};

    struct Seg {
        paddr: u64,
        data: Vec<u8>,
        memsz: u64,
    }

    fn seg(paddr: u64, data: Vec<u8>) -> Seg {
        let memsz = data.len() as u64;
        Seg { paddr, data, memsz }
    }

    /// An ELF executable whose program headers list `segs` in the given order; virtual
    /// addresses differ from physical ones so a conversion using p_vaddr would be caught.
    fn elf(machine: u16, segs: &[Seg]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(segs.len() as u32);
        let offsets: Vec<usize> = segs.iter().map(|s| w.reserve(s.data.len(), 16)).collect();
        w.write_file_header(&WFileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: elf::ET_EXEC,
            e_machine: machine,
            e_entry: segs.first().map_or(0, |s| s.paddr),
            e_flags: 0,
        })
        .unwrap();
        w.write_align_program_headers();
        for (s, &off) in segs.iter().zip(&offsets) {
            w.write_program_header(&WProgramHeader {
                p_type: elf::PT_LOAD,
                p_flags: elf::PF_R,
                p_offset: off as u64,
                p_vaddr: 0xffff_8000_0000_0000 + s.paddr,
                p_paddr: s.paddr,
                p_filesz: s.data.len() as u64,
                p_memsz: s.memsz,
                p_align: 16,
            });
        }
        for s in segs {
            w.write_align(16);
            w.write(&s.data);
        }
        out
    }

    /// An arm64 Image header claiming `image_size`, padded with `body` bytes of 0xaa.
    fn header(image_size: u64, body: usize) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[8..16].copy_from_slice(&0u64.to_le_bytes()); // text_offset
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&MAGIC);
        h.extend(std::iter::repeat_n(0xaa, body));
        h
    }

    const BASE: u64 = 0x4020_0000;

    #[test]
    fn segments_are_placed_by_physical_address_with_zero_filled_gaps() {
        let text = header(0x10000, 0x40);
        let data = vec![0x55u8; 0x20];
        let bytes = elf(
            elf::EM_AARCH64,
            &[seg(BASE + 0x1000, data.clone()), seg(BASE, text.clone())],
        );
        let image = flat_image(&bytes).unwrap();
        assert_eq!(image.len(), 0x1020);
        assert_eq!(&image[..text.len()], &text[..]);
        assert!(image[text.len()..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x1000..], &data[..]);
    }

    #[test]
    fn memory_only_segments_and_bss_tails_add_no_file_bytes() {
        let text = header(0x8000, 0x100);
        let mut with_bss = seg(BASE, text.clone());
        with_bss.memsz = 0x4000;
        let bss = Seg {
            paddr: BASE + 0x6000,
            data: Vec::new(),
            memsz: 0x1000,
        };
        let image = flat_image(&elf(elf::EM_AARCH64, &[with_bss, bss])).unwrap();
        assert_eq!(image, text);
    }

    #[test]
    fn a_missing_magic_is_refused() {
        let mut text = header(0x1000, 0x40);
        text[MAGIC_OFFSET] = b'X';
        let err = flat_image(&elf(elf::EM_AARCH64, &[seg(BASE, text)])).unwrap_err();
        assert_eq!(err, FlatImageError::BadMagic { found: *b"XRM\x64" });
    }

    #[test]
    fn the_header_must_be_in_the_lowest_segment() {
        let text = header(0x10000, 0x40);
        let below = seg(BASE - 0x1000, vec![1u8; 0x80]);
        let err = flat_image(&elf(elf::EM_AARCH64, &[seg(BASE, text), below])).unwrap_err();
        assert!(matches!(err, FlatImageError::BadMagic { .. }), "{err}");
    }

    #[test]
    fn an_image_size_below_the_file_length_is_refused() {
        let text = header(0x40, 0x40);
        let err = flat_image(&elf(elf::EM_AARCH64, &[seg(BASE, text)])).unwrap_err();
        assert_eq!(
            err,
            FlatImageError::ImageSizeTooSmall {
                image_size: 0x40,
                file_len: 0x80
            }
        );
    }

    #[test]
    fn an_image_shorter_than_the_header_is_refused() {
        let err = flat_image(&elf(elf::EM_AARCH64, &[seg(BASE, vec![0; 0x20])])).unwrap_err();
        assert_eq!(err, FlatImageError::TooShort { len: 0x20 });
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let text = header(0x10000, 0x100);
        let err = flat_image(&elf(
            elf::EM_AARCH64,
            &[seg(BASE, text), seg(BASE + 0x80, vec![2; 0x10])],
        ))
        .unwrap_err();
        assert_eq!(
            err,
            FlatImageError::Overlap {
                first: BASE,
                second: BASE + 0x80
            }
        );
    }

    #[test]
    fn a_far_away_segment_is_refused_instead_of_writing_gigabytes() {
        let text = header(0x10000, 0x40);
        let err = flat_image(&elf(
            elf::EM_AARCH64,
            &[seg(BASE, text), seg(BASE + (1 << 32), vec![3; 8])],
        ))
        .unwrap_err();
        assert_eq!(
            err,
            FlatImageError::TooLarge {
                span: (1 << 32) + 8
            }
        );
    }

    #[test]
    fn other_machines_and_non_elf_files_are_refused() {
        let text = header(0x1000, 0x40);
        let err = flat_image(&elf(elf::EM_X86_64, &[seg(BASE, text.clone())])).unwrap_err();
        assert!(matches!(
            err,
            FlatImageError::NotAarch64 {
                machine: elf::EM_X86_64,
                ..
            }
        ));
        assert!(matches!(flat_image(&text), Err(FlatImageError::NotElf(_))));
        assert_eq!(
            flat_image(&elf(elf::EM_AARCH64, &[])),
            Err(FlatImageError::NoLoadSegment)
        );
    }
}
