//! VM snapshot files: the format (version 3, specified below), a streaming writer, a reader
//! that validates a whole file before handing anything out, and chains of a full snapshot plus
//! diffs. Portable and host-tested; the hypervisor's EL2 side (`hyp`) pauses vCPUs, gathers
//! their state and moves the bytes.
//!
//! # Format, version 3
//!
//! Version 2 added the pointer-authentication keys to the VCPU section (a restored kernel
//! needs the keys it signed its return addresses with); version 3 the emulated EL1 physical
//! timer's CTL and CVAL (a guest using that timer would lose it). Older files are refused,
//! naming both versions.
//!
//! All integers are little-endian. CRC-32 is the IEEE 802.3 CRC (reflected polynomial
//! 0xEDB88320, initial value and final XOR 0xFFFFFFFF; `crc32("123456789") == 0xCBF43926`).
//! Pages are 4096 bytes; a guest frame number (GFN) is a guest-physical address divided by
//! 4096. A file is a header, any number of sections, and a trailer that ends the file:
//!
//! ```text
//! header (120 bytes) | section | section | ... | trailer (32 bytes)
//! ```
//!
//! ## Header
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic `"HYPSNAP\0"` |
//! | 8 | 4 | format version: 3 (`format::VERSION`) |
//! | 12 | 4 | header length: 120 |
//! | 16 | 4 | kind: 1 full, 2 diff |
//! | 20 | 4 | flags: bit 0 LIVE (pages copied while the guest ran, see PAGES); other bits 0 |
//! | 24 | 8 | snapshot id (chosen by the writer) |
//! | 32 | 8 | base id: for a diff, the id of the snapshot it is relative to; 0 for a full one |
//! | 40 | 32 | VM name: UTF-8, NUL-padded, no NUL inside |
//! | 72 | 4 | vCPU count, 1..=128 |
//! | 76 | 4 | reserved, 0 |
//! | 80 | 8 | RAM base (guest-physical, page-aligned) |
//! | 88 | 8 | RAM size (non-zero multiple of 4096; base + size does not overflow) |
//! | 96 | 8 | the guest's virtual counter (CNTVCT_EL0) when its vCPUs stopped |
//! | 104 | 8 | counter frequency in Hz (CNTFRQ_EL0), non-zero |
//! | 112 | 4 | reserved, 0 |
//! | 116 | 4 | CRC-32 of bytes 0..116 |
//!
//! A reader checks the magic, then the version, then the header length, then the CRC: a file
//! of another version is refused by version, whatever its header looks like.
//!
//! ## Sections
//! Each section is a 24-byte header and a payload:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 4 | type: 1 VCPU, 2 VGIC, 3 UART, 4 PAGES, 5 TIMER |
//! | 4 | 4 | flags: 0 (none defined in version 3) |
//! | 8 | 8 | payload length in bytes |
//! | 16 | 4 | CRC-32 of section bytes 0..16 followed by the payload |
//! | 20 | 4 | reserved, 0 |
//!
//! Sections follow each other without padding, in any order, and must exactly fill the space
//! between the header and the trailer. Every section type a version-3 file may contain is
//! listed here; a reader refuses any other type rather than skipping it.
//!
//! **VCPU** (1176 bytes; exactly one per vCPU, in every snapshot, full or diff): u32 index,
//! u32 power state (0 off, 1 on), then u64s: x0..x30, sp_el0, pc, pstate (SPSR_EL2 layout;
//! M\[4:0\] must be EL0t 0b00000, EL1t 0b00100 or EL1h 0b00101), the 37 EL1 registers in this
//! order: sctlr_el1, ttbr0_el1, ttbr1_el1, tcr_el1, mair_el1, amair_el1, vbar_el1,
//! contextidr_el1, tpidr_el0, tpidr_el1, tpidrro_el0, esr_el1, far_el1, afsr0_el1, afsr1_el1,
//! par_el1, cpacr_el1, cntkctl_el1, cntv_ctl_el0, cntv_cval_el0, mdscr_el1, csselr_el1,
//! sp_el1, elr_el1, spsr_el1, then the pointer-authentication keys apiakeylo_el1,
//! apiakeyhi_el1, apibkeylo_el1, apibkeyhi_el1, apdakeylo_el1, apdakeyhi_el1, apdbkeylo_el1,
//! apdbkeyhi_el1, apgakeylo_el1, apgakeyhi_el1 (zero where the CPU has no pointer
//! authentication), cntp_ctl_el0 (ENABLE and IMASK), cntp_cval_el0 (the emulated physical
//! timer, its compare value in the guest's time base) (see [`El1Regs::NAMES`]); then q0..q31 as u128 (low u64 first),
//! fpcr, fpsr (u64), ich_vmcr_el2, ich_ap0r0..3_el2, ich_ap1r0..3_el2 (u64 each).
//!
//! **VGIC**, **UART** (at most one of each): the device model's own versioned state blob
//! (`Vgic::save_state`, `Pl011::save_state`); their layouts are documented there.
//!
//! **TIMER** (type 5, at most one, optional): u64, the guest's virtual counter when its vCPUs
//! stopped. When present it replaces the header's counter (a live snapshot writes its header
//! before the pre-copy, while the guest still runs).
//!
//! **PAGES** (any number): u64 first GFN, u64 page count (≥ 1), then count × 4096 bytes, the
//! pages in GFN order. Every page lies in `[RAM base, RAM base + RAM size)`. Without the LIVE
//! flag no GFN is in two runs of one file. With it (a live pre-copy appends pages dirtied
//! again in later rounds), a GFN may be saved again by a later PAGES section, and the copy
//! latest in the file is the page's contents. Only populated pages are written; a page absent
//! from a full snapshot was never populated (restore leaves it unpopulated). A diff holds the
//! pages written since its base; its vCPU and device sections are complete states.
//!
//! ## Trailer
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | magic `"HYPSEND\0"` |
//! | 8 | 8 | number of sections |
//! | 16 | 8 | number of pages written (sum of the PAGES counts, repeats included) |
//! | 24 | 4 | CRC-32 of every file byte before the trailer |
//! | 28 | 4 | reserved, 0 |
//!
//! The trailer is the last 32 bytes of the file: a file whose last 32 bytes are not one is
//! truncated (or has bytes appended) and is refused.
//!
//! ## A reader refuses
//! Wrong magic; another version (the message names both versions); any length that does not
//! match its record; any CRC mismatch; non-zero reserved bytes, unknown header flags or any
//! section flags; an unknown kind or section type; a full snapshot with a non-zero base id; a
//! VM configuration out of range; a vCPU index out of range, twice, or missing; a power state
//! other than 0/1 or a PSTATE mode above EL1; a second VGIC or UART section; a page run that
//! is empty, outside RAM, or (without LIVE) overlapping another; trailer counts that disagree
//! with the sections. The restorer still compares the header's VM configuration with the VM
//! it builds (the file cannot know that).
//!
//! ## Chains
//! A restore applies a full snapshot, then each diff in order: diff `n`'s base id is the id of
//! snapshot `n - 1`, and all share one VM configuration (name, vCPUs, RAM, counter frequency).
//! A later copy of a page overrides an earlier one; vCPU state comes from the newest
//! snapshot, each device's state from the newest snapshot that has it ([`Chain`]). A diff
//! cannot say that a page became unpopulated (e.g. RAM given back at a VM reset): after such
//! a change, take a full snapshot.
#![forbid(unsafe_code)]

mod chain;
pub mod crc;
mod error;
mod format;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::{Chain, ChainError};
pub use error::SnapshotError;
pub use format::{
    ConfigError, DeviceKind, El1Regs, GicCpuIf, HEADER_LEN, Header, Kind, MAGIC, MAX_VCPUS,
    NAME_LEN, PAGE_SIZE, PAGES_PREFIX_LEN, PowerState, SECTION_HEADER_LEN, SectionKind,
    TRAILER_LEN, TRAILER_MAGIC, VCPU_LEN, VERSION, VcpuState, VmConfig, VmName,
};
pub use reader::{PageRun, Snapshot};
pub use writer::{Sink, SnapshotWriter, Summary, WriteError};
