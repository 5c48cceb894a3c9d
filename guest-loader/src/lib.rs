//! Guest loading: arm64 Image header, VM description from the boot DTB, the guest's DTB,
//! placement of images in guest memory.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod domain;
pub mod dtb;
pub mod guest_dtb;
pub mod image;
pub mod layout;
