//! Where kernel, initrd and DTB go in guest memory, as Linux's arm64 `booting.rst` requires:
//! the kernel `text_offset` bytes above a 2 MiB-aligned base, with `image_size` bytes free from
//! there; the DTB 8-byte aligned, at most 2 MiB, in a 2 MiB region of its own (Linux maps it
//! with a block there); the initrd anywhere in RAM clear of both.
//!
//! The kernel goes at the bottom of guest RAM (its base is the RAM base, which keeps every
//! placement policy happy), the DTB in the last 2 MiB of RAM and the initrd just below it, so
//! the kernel's free memory between them stays one contiguous range.

use core::fmt;

use crate::image::{BASE_ALIGN, ImageHeader};

/// Largest DTB Linux accepts.
pub const MAX_DTB_SIZE: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// Guest-physical placement of everything the vCPU needs at its first instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    pub ram_base: u64,
    pub ram_size: u64,
    /// Load address of the Image file; the vCPU starts here.
    pub kernel: u64,
    /// End of the kernel's `image_size` footprint.
    pub kernel_end: u64,
    /// `(start, len)` of the initrd, when there is one.
    pub initrd: Option<(u64, u64)>,
    /// The DTB's address: x0 at entry.
    pub dtb: u64,
}

/// Why the images do not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceError {
    /// Guest RAM must start on a 2 MiB boundary and be a whole number of pages.
    BadRam {
        base: u64,
        size: u64,
    },
    DtbTooLarge {
        len: u64,
    },
    /// Kernel, initrd and DTB together need more RAM than the VM has.
    DoesNotFit {
        needed: u64,
        ram: u64,
    },
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadRam { base, size } => write!(
                f,
                "guest RAM {base:#x}+{size:#x} must start 2 MiB-aligned and be a whole number of pages"
            ),
            Self::DtbTooLarge { len } => {
                write!(
                    f,
                    "guest device tree is {len} bytes; Linux accepts at most 2 MiB"
                )
            }
            Self::DoesNotFit { needed, ram } => write!(
                f,
                "kernel, initrd and device tree need {needed:#x} bytes of guest RAM but the VM \
                 has {ram:#x}; give it more memory"
            ),
        }
    }
}

const fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Places a kernel with `header`, an optional initrd of `initrd_len` bytes and a DTB of
/// `dtb_len` bytes in guest RAM `[ram_base, ram_base + ram_size)`.
///
/// # Errors
/// [`PlaceError`]: misaligned RAM, an oversized DTB, or not enough RAM.
pub fn place(
    ram_base: u64,
    ram_size: u64,
    header: &ImageHeader,
    initrd_len: Option<u64>,
    dtb_len: u64,
) -> Result<GuestLayout, PlaceError> {
    let ram_end = ram_base.checked_add(ram_size);
    if !ram_base.is_multiple_of(BASE_ALIGN) || !ram_size.is_multiple_of(PAGE) || ram_end.is_none() {
        return Err(PlaceError::BadRam {
            base: ram_base,
            size: ram_size,
        });
    }
    if dtb_len > MAX_DTB_SIZE {
        return Err(PlaceError::DtbTooLarge { len: dtb_len });
    }
    let initrd_pages = align_up(initrd_len.unwrap_or(0), PAGE);
    // Kernel footprint rounded to 2 MiB, initrd pages, and the DTB's own 2 MiB region.
    let needed = align_up(header.text_offset + header.image_size, BASE_ALIGN)
        .saturating_add(initrd_pages)
        .saturating_add(MAX_DTB_SIZE);
    if needed > ram_size {
        return Err(PlaceError::DoesNotFit {
            needed,
            ram: ram_size,
        });
    }
    let kernel = ram_base + header.text_offset;
    let kernel_end = kernel + header.image_size;
    let dtb = ram_base + ram_size - MAX_DTB_SIZE;
    let initrd = initrd_len.map(|len| (dtb - initrd_pages, len));
    Ok(GuestLayout {
        ram_base,
        ram_size,
        kernel,
        kernel_end,
        initrd,
        dtb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{PageSize, Placement};
    use proptest::prelude::*;

    fn header(text_offset: u64, image_size: u64) -> ImageHeader {
        ImageHeader {
            text_offset,
            image_size,
            page_size: PageSize::K4,
            placement: Placement::Anywhere,
            file_len: image_size / 2,
        }
    }

    #[test]
    fn typical_linux_guest() {
        let l = place(
            0x4000_0000,
            512 << 20,
            &header(0, 0x260_0000),
            Some(0x80_1234),
            0x2000,
        )
        .unwrap();
        assert_eq!(l.kernel, 0x4000_0000);
        assert_eq!(l.dtb, 0x4000_0000 + (510 << 20));
        let (initrd, len) = l.initrd.unwrap();
        assert_eq!(len, 0x80_1234);
        assert_eq!(initrd % PAGE, 0);
        assert!(initrd + len <= l.dtb && initrd >= l.kernel_end);
    }

    #[test]
    fn refusals_say_why() {
        let h = header(0, 0x200_0000);
        assert_eq!(
            place(0x4010_0000, 1 << 30, &h, None, 100),
            Err(PlaceError::BadRam {
                base: 0x4010_0000,
                size: 1 << 30
            })
        );
        assert_eq!(
            place(0x4000_0000, 1 << 30, &h, None, 3 << 20),
            Err(PlaceError::DtbTooLarge { len: 3 << 20 })
        );
        assert!(matches!(
            place(0x4000_0000, 4 << 20, &h, Some(1), 100),
            Err(PlaceError::DoesNotFit { .. })
        ));
    }

    proptest! {
        /// Whatever is accepted keeps all three inside RAM, aligned, and apart.
        #[test]
        fn placements_never_overlap(
            text in 0u64..512, size in 1u64..(64 << 20), initrd in proptest::option::of(1u64..(64 << 20)),
            dtb in 1u64..(4 << 20), ram_mb in 1u64..256,
        ) {
            let h = header(text * PAGE, size);
            let ram = ram_mb << 21;
            if let Ok(l) = place(0x4000_0000, ram, &h, initrd, dtb) {
                let end = 0x4000_0000 + ram;
                prop_assert_eq!((l.kernel - 0x4000_0000) % PAGE, 0);
                prop_assert!(l.kernel_end <= l.dtb);
                prop_assert!(l.dtb % (2 << 20) == 0 && l.dtb + dtb <= end);
                if let Some((s, len)) = l.initrd {
                    prop_assert!(s >= l.kernel_end && s + len <= l.dtb && s % PAGE == 0);
                }
            }
        }
    }
}
