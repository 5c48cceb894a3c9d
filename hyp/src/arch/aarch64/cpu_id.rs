//! The host's ID registers, read at EL2 (where they never trap) for the guests' curated view
//! (`vm::cpu_id`).

use crate::vm::cpu_id::GuestIdRegs;

/// Reads ID register (op0 3, op1 0, CRn 0, `crm`, `op2`) of this CPU; 0 outside CRm 1 to 7.
fn host_id_reg(crm: u8, op2: u8) -> u64 {
    // Every encoding of the ID space reads without an exception (reserved ones read as zero),
    // so one arm per encoding, spelled generically for assemblers that lack the newer names.
    macro_rules! id_space {
        ($($crm:literal: $($op2:literal)*;)*) => {
            match (crm, op2) {
                $($(($crm, $op2) => {
                    let value: u64;
                    // SAFETY: an MRS of the ID space at EL2 only copies a value into a
                    // general-purpose register; every encoding there exists (RAZ if reserved).
                    unsafe {
                        core::arch::asm!(concat!("mrs {}, s3_0_c0_c", $crm, "_", $op2),
                            out(reg) value, options(nomem, nostack, preserves_flags));
                    }
                    value
                })*)*
                _ => 0,
            }
        };
    }
    id_space! {
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    }
}

/// The ID registers a guest with an `ipa_bits` IPA space sees on this host.
pub fn guest_id_regs(ipa_bits: u8) -> GuestIdRegs {
    GuestIdRegs::new(host_id_reg, ipa_bits)
}
