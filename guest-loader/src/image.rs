//! The arm64 Linux `Image` header (Linux `Documentation/arch/arm64/booting.rst`, section 4).
//!
//! A loader only needs four things from it: that the file really is an arm64 Image, where in a
//! 2 MiB-aligned window it must be placed (`text_offset`), how much memory it occupies once running
//! (`image_size`, which includes its BSS and so exceeds the file), and the flags saying the kernel
//! is little-endian with 4 KiB pages. Everything is validated up front so that a bad kernel is
//! refused with a sentence instead of becoming a guest that dies mysteriously later.

use core::fmt;

/// Length of the header at the start of every arm64 Image.
pub const HEADER_LEN: usize = 64;
/// "ARM\x64", little-endian, at offset 0x38.
const MAGIC: u32 = 0x644d_5241;
const MAGIC_OFFSET: usize = 0x38;
/// Kernels older than 3.17 leave `image_size` zero; booting.rst says to assume this offset then.
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The base the Image is placed relative to must be 2 MiB aligned.
pub const BASE_ALIGN: u64 = 2 << 20;

/// Page size the kernel was built for (flags bits 1-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Unspecified,
    K4,
    K16,
    K64,
}

/// Where the kernel accepts its 2 MiB-aligned base (flags bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The base should be as close as possible to the start of RAM.
    NearRamStart,
    /// Any 2 MiB-aligned base in RAM works.
    Anywhere,
}

/// A validated arm64 Image header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB-aligned base at which the Image must be loaded.
    pub text_offset: u64,
    /// Bytes the running kernel occupies from its load address (file plus BSS and early data).
    pub image_size: u64,
    pub page_size: PageSize,
    pub placement: Placement,
    /// Bytes in the file (never more than `image_size`).
    pub file_len: u64,
}

/// Why an Image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    Truncated { len: usize },
    /// No "ARM\x64" at offset 0x38 (a compressed `vmlinuz`, an ELF `vmlinux` or not a kernel).
    BadMagic { found: u32 },
    /// gzip magic at the start: the file needs decompressing first.
    Compressed,
    /// Flags bit 0: a big-endian kernel.
    BigEndian,
    /// The kernel needs a page size other than 4 KiB.
    UnsupportedPageSize { page_size: PageSize },
    /// `text_offset` is not a multiple of 4 KiB, or points past the 2 MiB window.
    BadTextOffset { text_offset: u64 },
    /// The file holds more bytes than the header says the image occupies.
    FileLargerThanImage { file_len: u64, image_size: u64 },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { len } => write!(
                f,
                "kernel image is {len} bytes, shorter than the {HEADER_LEN}-byte arm64 Image header"
            ),
            Self::BadMagic { found } => write!(
                f,
                "kernel is not an arm64 Image: magic at offset 0x38 is {found:#010x}, expected \
                 {MAGIC:#010x} (\"ARM\\x64\")"
            ),
            Self::Compressed => write!(
                f,
                "kernel image is gzip-compressed; decompress it (zcat vmlinuz > Image) first"
            ),
            Self::BigEndian => write!(
                f,
                "kernel image is big-endian; only little-endian guests are supported"
            ),
            Self::UnsupportedPageSize { page_size } => write!(
                f,
                "kernel image was built for {page_size:?} pages; only 4 KiB-page kernels are supported"
            ),
            Self::BadTextOffset { text_offset } => write!(
                f,
                "kernel image text_offset {text_offset:#x} is not 4 KiB-aligned or lies outside the 2 MiB window"
            ),
            Self::FileLargerThanImage {
                file_len,
                image_size,
            } => write!(
                f,
                "kernel image file is {file_len} bytes but its header says the image is only \
                 {image_size} bytes (corrupt or has data appended)"
            ),
        }
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl ImageHeader {
    /// Validates the header of the whole Image file `image`.
    ///
    /// # Errors
    /// Every variant of [`ImageError`]; see there.
    pub fn parse(image: &[u8]) -> Result<Self, ImageError> {
        if image.len() >= 2 && image[..2] == [0x1f, 0x8b] {
            return Err(ImageError::Compressed);
        }
        if image.len() < HEADER_LEN {
            return Err(ImageError::Truncated { len: image.len() });
        }
        let magic = le_u32(image, MAGIC_OFFSET);
        if magic != MAGIC {
            return Err(ImageError::BadMagic { found: magic });
        }
        let file_len = image.len() as u64;
        let mut text_offset = le_u64(image, 8);
        let mut image_size = le_u64(image, 16);
        let flags = le_u64(image, 24);
        if image_size == 0 {
            // Pre-3.17: text_offset's endianness is unknown and the size unrecorded.
            text_offset = LEGACY_TEXT_OFFSET;
            image_size = file_len;
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        let page_size = match (flags >> 1) & 3 {
            0 => PageSize::Unspecified,
            1 => PageSize::K4,
            2 => PageSize::K16,
            _ => PageSize::K64,
        };
        if matches!(page_size, PageSize::K16 | PageSize::K64) {
            return Err(ImageError::UnsupportedPageSize { page_size });
        }
        let placement = if flags & (1 << 3) != 0 {
            Placement::Anywhere
        } else {
            Placement::NearRamStart
        };
        if !text_offset.is_multiple_of(4096) || text_offset >= BASE_ALIGN {
            return Err(ImageError::BadTextOffset { text_offset });
        }
        if file_len > image_size {
            return Err(ImageError::FileLargerThanImage {
                file_len,
                image_size,
            });
        }
        Ok(Self {
            text_offset,
            image_size,
            page_size,
            placement,
            file_len,
        })
    }

    /// The load address for a kernel whose 2 MiB-aligned window starts at `base`, or `None` if
    /// `base` is misaligned or the address would overflow.
    pub fn load_address(&self, base: u64) -> Option<u64> {
        if !base.is_multiple_of(BASE_ALIGN) {
            return None;
        }
        base.checked_add(self.text_offset)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn header(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len.max(HEADER_LEN)];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[24..32].copy_from_slice(&flags.to_le_bytes());
        v[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
        v.truncate(len);
        v
    }

    #[test]
    fn modern_4k_kernel_parses() {
        let img = header(0, 0x200_0000, 0b1010, 4096);
        let h = ImageHeader::parse(&img).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, 0x200_0000);
        assert_eq!(h.page_size, PageSize::K4);
        assert_eq!(h.placement, Placement::Anywhere);
        assert_eq!(h.load_address(0x4000_0000), Some(0x4000_0000));
        assert_eq!(h.load_address(0x4010_0000), None);
    }

    #[test]
    fn legacy_kernel_gets_the_documented_offset() {
        let img = header(0x1234, 0, 0, 8192);
        let h = ImageHeader::parse(&img).unwrap();
        assert_eq!(h.text_offset, 0x8_0000);
        assert_eq!(h.image_size, 8192);
    }

    #[test]
    fn bad_images_are_refused_with_the_cause() {
        assert_eq!(
            ImageHeader::parse(&[0; 10]),
            Err(ImageError::Truncated { len: 10 })
        );
        assert_eq!(
            ImageHeader::parse(&[0x1f, 0x8b, 8, 0]),
            Err(ImageError::Compressed)
        );
        assert_eq!(
            ImageHeader::parse(&[0; 64]),
            Err(ImageError::BadMagic { found: 0 })
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 1 << 20, 1, 64)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 1 << 20, 0b110, 64)),
            Err(ImageError::UnsupportedPageSize {
                page_size: PageSize::K64
            })
        );
        assert_eq!(
            ImageHeader::parse(&header(0x123, 1 << 20, 2, 64)),
            Err(ImageError::BadTextOffset { text_offset: 0x123 })
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 100, 2, 4096)),
            Err(ImageError::FileLargerThanImage {
                file_len: 4096,
                image_size: 100
            })
        );
        let msg = std::format!("{}", ImageError::BadMagic { found: 0x1234 });
        assert!(msg.contains("not an arm64 Image"), "{msg}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ImageHeader::parse(&bytes);
        }

        #[test]
        fn every_truncation_of_a_valid_image_is_handled(cut in 0usize..4096) {
            let img = header(0, 0x10_0000, 0b1010, 4096);
            match ImageHeader::parse(&img[..cut]) {
                Ok(h) => prop_assert!(cut >= HEADER_LEN && h.file_len == cut as u64),
                Err(e) => prop_assert!(cut < HEADER_LEN, "{e}"),
            }
        }
    }
}
