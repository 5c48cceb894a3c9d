//! The GICv3 virtual CPU interface at EL2: ICH_* registers, the per-vCPU state they hold, and
//! loading a `vdev::vgic::Flush` into the list registers.
//!
//! Order the run loop follows (see `vdev` glue protocol):
//! before entry `restore(&state)` then `apply_flush(&flush)`; after exit `save(&mut state)`
//! then `Vgic::sync(vcpu, &state.lrs[..n_lrs()])`.
//! Invariant: list registers at or above `n_lrs()` are never touched (they do not exist;
//! accessing them is UNDEFINED), checked by `debug_assert!` in `read_lr`/`write_lr`.

use crate::vdev::vgic::{Flush, MAX_LRS};

/// ICH_HCR_EL2.En: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE: maintenance interrupt when no more than one LR holds an interrupt.
pub const HCR_UIE: u64 = 1 << 1;

macro_rules! mrs {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading an ICH_* register at EL2 only copies its value; the virtual CPU
        // interface exists because the hypervisor requires GICv3 system registers.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags));
        }
        value
    }};
}

macro_rules! msr {
    ($name:literal, $value:expr) => {{
        // SAFETY: ICH_* registers only affect the virtual CPU interface a guest sees once
        // entered; the hypervisor's own memory and interrupts are untouched.
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value,
                options(nomem, nostack, preserves_flags));
        }
    }};
}

/// ICH_VTR_EL2.
pub fn vtr() -> u64 {
    mrs!("ich_vtr_el2")
}

/// Number of list registers this CPU implements (ICH_VTR_EL2.ListRegs + 1).
pub fn n_lrs() -> usize {
    (vtr() & 0x1f) as usize + 1
}

/// Virtual priority bits (ICH_VTR_EL2.PRIbits + 1), which sets how many AP0R/AP1R exist.
pub fn pri_bits() -> u32 {
    ((vtr() >> 29) & 0x7) as u32 + 1
}

/// Number of active-priority registers per group: 1, 2 or 4 for 5, 6 or 7 priority bits.
pub fn n_apr() -> usize {
    match pri_bits() {
        7.. => 4,
        6 => 2,
        _ => 1,
    }
}

pub fn hcr() -> u64 {
    mrs!("ich_hcr_el2")
}
pub fn set_hcr(v: u64) {
    msr!("ich_hcr_el2", v);
}
pub fn vmcr() -> u64 {
    mrs!("ich_vmcr_el2")
}
pub fn set_vmcr(v: u64) {
    msr!("ich_vmcr_el2", v);
}
/// ICH_MISR_EL2: why the maintenance interrupt fired.
pub fn misr() -> u64 {
    mrs!("ich_misr_el2")
}
/// ICH_EISR_EL2: LRs holding an EOIed interrupt that asked for a maintenance interrupt.
pub fn eisr() -> u64 {
    mrs!("ich_eisr_el2")
}
/// ICH_ELRSR_EL2: LRs that hold no interrupt.
pub fn elrsr() -> u64 {
    mrs!("ich_elrsr_el2")
}

/// ICH_LR<n>_EL2.
pub fn read_lr(n: usize) -> u64 {
    debug_assert!(n < n_lrs(), "ICH_LR{n}_EL2 not implemented");
    match n {
        0 => mrs!("ich_lr0_el2"),
        1 => mrs!("ich_lr1_el2"),
        2 => mrs!("ich_lr2_el2"),
        3 => mrs!("ich_lr3_el2"),
        4 => mrs!("ich_lr4_el2"),
        5 => mrs!("ich_lr5_el2"),
        6 => mrs!("ich_lr6_el2"),
        7 => mrs!("ich_lr7_el2"),
        8 => mrs!("ich_lr8_el2"),
        9 => mrs!("ich_lr9_el2"),
        10 => mrs!("ich_lr10_el2"),
        11 => mrs!("ich_lr11_el2"),
        12 => mrs!("ich_lr12_el2"),
        13 => mrs!("ich_lr13_el2"),
        14 => mrs!("ich_lr14_el2"),
        15 => mrs!("ich_lr15_el2"),
        _ => panic!("no list register {n}"),
    }
}

/// Writes ICH_LR<n>_EL2.
pub fn write_lr(n: usize, v: u64) {
    debug_assert!(n < n_lrs(), "ICH_LR{n}_EL2 not implemented");
    match n {
        0 => msr!("ich_lr0_el2", v),
        1 => msr!("ich_lr1_el2", v),
        2 => msr!("ich_lr2_el2", v),
        3 => msr!("ich_lr3_el2", v),
        4 => msr!("ich_lr4_el2", v),
        5 => msr!("ich_lr5_el2", v),
        6 => msr!("ich_lr6_el2", v),
        7 => msr!("ich_lr7_el2", v),
        8 => msr!("ich_lr8_el2", v),
        9 => msr!("ich_lr9_el2", v),
        10 => msr!("ich_lr10_el2", v),
        11 => msr!("ich_lr11_el2", v),
        12 => msr!("ich_lr12_el2", v),
        13 => msr!("ich_lr13_el2", v),
        14 => msr!("ich_lr14_el2", v),
        15 => msr!("ich_lr15_el2", v),
        _ => panic!("no list register {n}"),
    }
}

fn read_ap(group1: bool, n: usize) -> u64 {
    match (group1, n) {
        (false, 0) => mrs!("ich_ap0r0_el2"),
        (false, 1) => mrs!("ich_ap0r1_el2"),
        (false, 2) => mrs!("ich_ap0r2_el2"),
        (false, 3) => mrs!("ich_ap0r3_el2"),
        (true, 0) => mrs!("ich_ap1r0_el2"),
        (true, 1) => mrs!("ich_ap1r1_el2"),
        (true, 2) => mrs!("ich_ap1r2_el2"),
        (true, 3) => mrs!("ich_ap1r3_el2"),
        _ => panic!("no active-priority register {n}"),
    }
}

fn write_ap(group1: bool, n: usize, v: u64) {
    match (group1, n) {
        (false, 0) => msr!("ich_ap0r0_el2", v),
        (false, 1) => msr!("ich_ap0r1_el2", v),
        (false, 2) => msr!("ich_ap0r2_el2", v),
        (false, 3) => msr!("ich_ap0r3_el2", v),
        (true, 0) => msr!("ich_ap1r0_el2", v),
        (true, 1) => msr!("ich_ap1r1_el2", v),
        (true, 2) => msr!("ich_ap1r2_el2", v),
        (true, 3) => msr!("ich_ap1r3_el2", v),
        _ => panic!("no active-priority register {n}"),
    }
}

/// A vCPU's virtual CPU interface state while it is not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgicCpuState {
    pub hcr: u64,
    pub vmcr: u64,
    pub ap0r: [u64; 4],
    pub ap1r: [u64; 4],
    /// List registers as read back on exit: what `Vgic::sync` takes (`lrs[..n_lrs()]`).
    pub lrs: [u64; MAX_LRS],
}

/// Saves the running vCPU's virtual CPU interface, then disables it (ICH_HCR_EL2 = 0) so a
/// stale maintenance interrupt cannot fire while the hypervisor runs.
pub fn save(s: &mut VgicCpuState) {
    let n = n_lrs();
    for (i, lr) in s.lrs.iter_mut().enumerate() {
        *lr = if i < n { read_lr(i) } else { 0 };
    }
    for i in 0..n_apr() {
        s.ap0r[i] = read_ap(false, i);
        s.ap1r[i] = read_ap(true, i);
    }
    s.vmcr = vmcr();
    s.hcr = hcr();
    set_hcr(0);
}

/// Loads a vCPU's VMCR and active priorities (the list registers come from `apply_flush`).
pub fn restore(s: &VgicCpuState) {
    set_vmcr(s.vmcr);
    for i in 0..n_apr() {
        write_ap(false, i, s.ap0r[i]);
        write_ap(true, i, s.ap1r[i]);
    }
}

/// Writes a flush's list registers and enables the virtual CPU interface, asking for an
/// underflow maintenance interrupt when interrupts were left out.
pub fn apply_flush(f: &Flush) {
    let n = n_lrs().min(f.n_lrs);
    for i in 0..n {
        write_lr(i, f.raw(i));
    }
    set_hcr(HCR_EN | if f.underflow { HCR_UIE } else { 0 });
}
