//! Virtual PL011.

/// Size of the PL011 MMIO window.
pub const PL011_SIZE: u64 = 0x1000;
