//! Decoding of ICC_SGI1R_EL1 / ICC_SGI0R_EL1 writes (GICv3 affinity-routed SGIs).

use super::irq::Intid;

/// Which vCPUs an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTargets {
    /// IRM = 1: every participating PE except the sender.
    AllButSelf,
    /// IRM = 0: the PEs with affinity `aff3.aff2.aff1.(16 * range + n)` for each bit `n` of
    /// `list`.
    List {
        aff3: u8,
        aff2: u8,
        aff1: u8,
        range: u8,
        list: u16,
    },
}

/// One SGI generation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    pub intid: Intid,
    pub targets: SgiTargets,
}

const IRM: u64 = 1 << 40;

impl SgiRequest {
    /// Decodes a value written to ICC_SGI1R_EL1 (the SGI0R and ASGI1R layouts are the same):
    /// TargetList [15:0], Aff1 [23:16], INTID [27:24], Aff2 [39:32], IRM [40], RS [47:44],
    /// Aff3 [55:48]. Every 64-bit value is a valid request.
    pub const fn decode(value: u64) -> Self {
        let intid = Intid::new(((value >> 24) & 0xf) as u32);
        let targets = if value & IRM != 0 {
            SgiTargets::AllButSelf
        } else {
            SgiTargets::List {
                aff3: (value >> 48) as u8,
                aff2: (value >> 32) as u8,
                aff1: (value >> 16) as u8,
                range: ((value >> 44) & 0xf) as u8,
                list: value as u16,
            }
        };
        Self { intid, targets }
    }

    /// Whether a PE with `mpidr` receives this SGI; `is_sender` says whether it sent it.
    pub fn targets_mpidr(&self, mpidr: u64, is_sender: bool) -> bool {
        match self.targets {
            SgiTargets::AllButSelf => !is_sender,
            SgiTargets::List {
                aff3,
                aff2,
                aff1,
                range,
                list,
            } => {
                let aff0 = (mpidr & 0xff) as u32;
                let base = u32::from(range) * 16;
                mpidr_aff(mpidr, 3) == aff3
                    && mpidr_aff(mpidr, 2) == aff2
                    && mpidr_aff(mpidr, 1) == aff1
                    && aff0 >= base
                    && aff0 < base + 16
                    && list & (1 << (aff0 - base)) != 0
            }
        }
    }
}

/// Affinity field `level` (0..=3) of an MPIDR_EL1 value.
pub const fn mpidr_aff(mpidr: u64, level: u32) -> u8 {
    let shift = match level {
        0 => 0,
        1 => 8,
        2 => 16,
        _ => 32,
    };
    (mpidr >> shift) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_field() {
        let v = (0x12u64 << 48) | (0x3 << 44) | (0x34 << 32) | (0x9 << 24) | (0x56 << 16) | 0x8001;
        assert_eq!(
            SgiRequest::decode(v),
            SgiRequest {
                intid: Intid::new(9),
                targets: SgiTargets::List {
                    aff3: 0x12,
                    aff2: 0x34,
                    aff1: 0x56,
                    range: 3,
                    list: 0x8001
                }
            }
        );
        let all = SgiRequest::decode(IRM | (5 << 24) | 0xffff);
        assert_eq!(
            all,
            SgiRequest {
                intid: Intid::new(5),
                targets: SgiTargets::AllButSelf
            }
        );
    }

    #[test]
    fn target_list_matches_by_range_and_bit() {
        // RS = 1, bit 2: Aff0 = 18 in cluster 0.0.1.
        let r = SgiRequest::decode((1 << 44) | (1 << 16) | (1 << 2));
        assert!(r.targets_mpidr(0x0112, false));
        assert!(r.targets_mpidr(0x0112, true), "a list may name the sender");
        assert!(!r.targets_mpidr(0x0102, false), "Aff0 2 is in range 0");
        assert!(!r.targets_mpidr(0x0012, false), "wrong Aff1");
        assert!(!r.targets_mpidr(0x1_0000_0112, false), "wrong Aff3");
        let all = SgiRequest::decode(IRM);
        assert!(all.targets_mpidr(7, false) && !all.targets_mpidr(7, true));
    }
}
