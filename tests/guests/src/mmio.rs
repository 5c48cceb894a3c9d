//! Volatile 32-bit device register access at fixed guest-physical addresses (identity mapped).

/// A block of device registers starting at `base`.
#[derive(Clone, Copy)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    pub const fn new(base: usize) -> Self {
        Self { base }
    }

    pub const fn base(self) -> usize {
        self.base
    }

    pub const fn offset(self, bytes: usize) -> Self {
        Self::new(self.base + bytes)
    }

    pub fn read32(self, offset: usize) -> u32 {
        debug_assert!(offset % 4 == 0);
        // SAFETY: `base` is one of QEMU virt's device windows (see the constants that build each
        // `Mmio`), identity mapped as Device memory by `mmu.rs`; the access is aligned.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    pub fn write32(self, offset: usize, value: u32) {
        debug_assert!(offset % 4 == 0);
        // SAFETY: as in `read32`; device registers, not memory Rust knows about.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub fn read64(self, offset: usize) -> u64 {
        debug_assert!(offset % 8 == 0);
        // SAFETY: as in `read32`, with 8-byte alignment.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }
}
