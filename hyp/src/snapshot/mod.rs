//! VM snapshot files: the format, writer, validating reader and chains are
//! `hyp_formats::snapshot` (the format is specified in its module comment), shared with the
//! host tools and re-exported here. The EL2 side (`arch::aarch64::guest::snapshot` and
//! `restore`) pauses vCPUs, gathers their state and moves the bytes.
#![forbid(unsafe_code)]

pub use hyp_formats::snapshot::*;

// A snapshot must be able to describe every VM the vGIC can run, and no more: the reader
// refuses vCPU counts above the format's limit, the restorer builds a vGIC from them.
const _: () = assert!(MAX_VCPUS as usize == crate::vdev::vgic::MAX_VCPUS);
