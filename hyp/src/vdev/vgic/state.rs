//! The vGIC's state as a versioned byte blob, for snapshots: [`Vgic::save_state`] and
//! [`Vgic::load_state`]. Saved only between vCPU runs, after every vCPU's list registers were
//! synced back, so the blob holds the model alone (no list-register shadows).
//!
//! Layout, version 1 (little-endian; the snapshot file's VGIC section CRC protects it):
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 4 | magic `"VGIC"` |
//! | 4 | 4 | version: 1 |
//! | 8 | 4 | vCPU count |
//! | 12 | 4 | SPI count (a multiple of 32, 32..=960) |
//! | 16 | 4 | GICD_CTLR group enables (bits 0 and 1 only) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | ... | per vCPU: u64 MPIDR affinity (Aff3..Aff0 bits only, unique), u32 flags (bit 0 GICR_WAKER.ProcessorSleep), u32 reserved 0, then 32 interrupt records for INTIDs 0..32 |
//! | ... | ... | one interrupt record per SPI, INTID 32 upwards |
//!
//! Interrupt record, 24 bytes: u32 flags (bit 0 enabled, 1 pending latch, 2 input line level,
//! 3 active, 4 group 1, 5 edge-triggered, 6 hardware-linked, 7 owned), u8 priority (low 3 bits
//! zero), 3 reserved zero bytes, u32 physical INTID (hardware-linked only, else 0; only SGIs
//! and PPIs may be linked), u32 owning vCPU (owned only, else 0: the vCPU whose CPU interface
//! has it active), u64 GICD_IROUTER (SPIs only: affinity and IRM bits; 0 for SGIs and PPIs).
//! An owned interrupt is active, a private one is owned only by its own vCPU, and SGIs are
//! edge-triggered.

use alloc::vec::Vec;
use core::fmt;

use super::irq::{Intid, Irq, PRIORITY_MASK};
use super::lr::MAX_PINTID;
use super::{AFF_MASK, CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1, IROUTER_IRM, MAX_VCPUS, Vgic};

const MAGIC: [u8; 4] = *b"VGIC";
/// The state layout version [`Vgic::save_state`] writes and [`Vgic::load_state`] reads.
pub const STATE_VERSION: u32 = 1;
const HEAD_LEN: usize = 24;
const IRQ_LEN: usize = 24;
const CPU_LEN: usize = 16 + 32 * IRQ_LEN;

const ENABLED: u32 = 1 << 0;
const PENDING_LATCH: u32 = 1 << 1;
const LINE: u32 = 1 << 2;
const ACTIVE: u32 = 1 << 3;
const GROUP1: u32 = 1 << 4;
const EDGE: u32 = 1 << 5;
const HW: u32 = 1 << 6;
const OWNED: u32 = 1 << 7;
const IRQ_FLAGS: u32 = 0xff;
const CPU_SLEEP: u32 = 1;

/// Why a vGIC state was not saved or not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicStateError {
    /// Saving while `vcpu`'s list registers hold interrupts (sync them first).
    ListRegistersLoaded {
        vcpu: usize,
    },
    /// The blob is shorter than its counts require.
    Truncated {
        len: usize,
        needed: usize,
    },
    BadMagic,
    Version {
        found: u32,
        supported: u32,
    },
    /// Saved for another number of vCPUs than the VM being restored has.
    VcpuCount {
        found: u32,
        expected: usize,
    },
    SpiCount {
        spis: u32,
    },
    /// Bytes after the last record.
    TrailingBytes {
        len: usize,
        expected: usize,
    },
    /// A field out of range, at `offset` in the blob.
    Field {
        offset: usize,
        field: &'static str,
        value: u64,
    },
}

impl fmt::Display for VgicStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListRegistersLoaded { vcpu } => write!(
                f,
                "cannot save the vGIC: vCPU {vcpu}'s list registers were not synced back"
            ),
            Self::Truncated { len, needed } => write!(
                f,
                "cannot load the vGIC state: {len} bytes, its counts need {needed}"
            ),
            Self::BadMagic => write!(
                f,
                "cannot load the vGIC state: it does not start with \"VGIC\""
            ),
            Self::Version { found, supported } => write!(
                f,
                "cannot load vGIC state version {found}: this hypervisor reads version {supported}"
            ),
            Self::VcpuCount { found, expected } => write!(
                f,
                "cannot load a vGIC state of {found} vCPUs into a VM with {expected}"
            ),
            Self::SpiCount { spis } => write!(
                f,
                "cannot load a vGIC state with {spis} SPIs: the count must be a multiple of 32 up to 960"
            ),
            Self::TrailingBytes { len, expected } => write!(
                f,
                "cannot load the vGIC state: {len} bytes, its counts give {expected}"
            ),
            Self::Field {
                offset,
                field,
                value,
            } => write!(
                f,
                "cannot load the vGIC state: {field} at offset {offset} is out of range ({value:#x})"
            ),
        }
    }
}

impl Vgic {
    /// The model's state in the layout of this module's doc.
    ///
    /// # Errors
    /// [`VgicStateError::ListRegistersLoaded`] when a vCPU's list registers were flushed and
    /// not synced back (their contents live in the hardware, not in the model).
    pub fn save_state(&self) -> Result<Vec<u8>, VgicStateError> {
        if let Some(vcpu) = self
            .cpus
            .iter()
            .position(|c| c.lrs.iter().any(Option::is_some))
        {
            return Err(VgicStateError::ListRegistersLoaded { vcpu });
        }
        let mut b =
            Vec::with_capacity(HEAD_LEN + self.cpus.len() * CPU_LEN + self.spis.len() * IRQ_LEN);
        b.extend_from_slice(&MAGIC);
        for v in [
            STATE_VERSION,
            self.cpus.len() as u32,
            self.spis.len() as u32,
            self.ctlr,
            0,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for cpu in &self.cpus {
            b.extend_from_slice(&cpu.mpidr.to_le_bytes());
            b.extend_from_slice(&u32::from(cpu.sleep).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            for irq in &cpu.private {
                put_irq(&mut b, irq);
            }
        }
        for irq in &self.spis {
            put_irq(&mut b, irq);
        }
        Ok(b)
    }

    /// A vGIC for `vcpus` vCPUs with the state `bytes` (from [`Vgic::save_state`]), every
    /// field checked so the module invariants hold.
    ///
    /// # Errors
    /// [`VgicStateError`]: the first problem found, in blob order.
    pub fn load_state(vcpus: usize, bytes: &[u8]) -> Result<Self, VgicStateError> {
        let mut r = In { b: bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(VgicStateError::BadMagic);
        }
        let version = r.u32()?;
        if version != STATE_VERSION {
            return Err(VgicStateError::Version {
                found: version,
                supported: STATE_VERSION,
            });
        }
        let n = r.u32()?;
        if n as usize != vcpus || vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(VgicStateError::VcpuCount {
                found: n,
                expected: vcpus,
            });
        }
        let spis = r.u32()?;
        if spis == 0 || !spis.is_multiple_of(32) || spis > 960 {
            return Err(VgicStateError::SpiCount { spis });
        }
        let expected = HEAD_LEN + vcpus * CPU_LEN + spis as usize * IRQ_LEN;
        if bytes.len() < expected {
            return Err(VgicStateError::Truncated {
                len: bytes.len(),
                needed: expected,
            });
        }
        if bytes.len() > expected {
            return Err(VgicStateError::TrailingBytes {
                len: bytes.len(),
                expected,
            });
        }
        let ctlr = r.field("GICD_CTLR", |v| {
            v & !(CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1) == 0
        })?;
        r.field("reserved", |v| v == 0)?;

        let mut mpidrs = Vec::with_capacity(vcpus);
        let mut privates = Vec::with_capacity(vcpus);
        let mut sleeps = Vec::with_capacity(vcpus);
        for v in 0..vcpus {
            let at = r.at;
            let mpidr = r.u64()?;
            if mpidr & !AFF_MASK != 0 || mpidrs.contains(&mpidr) {
                return Err(field(at, "MPIDR", mpidr));
            }
            mpidrs.push(mpidr);
            sleeps.push(r.field("redistributor flags", |f| f & !CPU_SLEEP == 0)? != 0);
            r.field("reserved", |v| v == 0)?;
            let mut private = [Irq::reset(false); 32];
            for (i, irq) in private.iter_mut().enumerate() {
                *irq = r.irq(vcpus, Intid::new(i as u32), Some(v))?;
            }
            privates.push(private);
        }
        let mut gic =
            Self::with_mpidrs(mpidrs, spis).map_err(|_| VgicStateError::SpiCount { spis })?;
        for ((cpu, private), sleep) in gic.cpus.iter_mut().zip(privates).zip(sleeps) {
            cpu.private = private;
            cpu.sleep = sleep;
        }
        for i in 0..spis {
            gic.spis[i as usize] = r.irq(vcpus, Intid::spi(i), None)?;
        }
        gic.ctlr = ctlr;
        // Anything cached against the old generation must rebuild its list registers.
        gic.generation = 1;
        Ok(gic)
    }
}

fn put_irq(b: &mut Vec<u8>, irq: &Irq) {
    let mut flags = 0;
    for (on, bit) in [
        (irq.enabled, ENABLED),
        (irq.pending_latch, PENDING_LATCH),
        (irq.line, LINE),
        (irq.active, ACTIVE),
        (irq.group1, GROUP1),
        (irq.edge, EDGE),
        (irq.hw.is_some(), HW),
        (irq.owner.is_some(), OWNED),
    ] {
        if on {
            flags |= bit;
        }
    }
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&[irq.priority, 0, 0, 0]);
    b.extend_from_slice(&irq.hw.unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&(irq.owner.unwrap_or(0) as u32).to_le_bytes());
    b.extend_from_slice(&irq.route.to_le_bytes());
}

fn field(offset: usize, field: &'static str, value: u64) -> VgicStateError {
    VgicStateError::Field {
        offset,
        field,
        value,
    }
}

/// Reads through a blob whose total length was checked against its counts.
struct In<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> In<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], VgicStateError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(VgicStateError::Truncated {
                len: self.b.len(),
                needed: self.at + n,
            })?;
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, VgicStateError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, VgicStateError> {
        let lo = self.u32()?;
        Ok(u64::from(lo) | u64::from(self.u32()?) << 32)
    }

    /// A u32 that must satisfy `ok`.
    fn field(
        &mut self,
        name: &'static str,
        ok: impl Fn(u32) -> bool,
    ) -> Result<u32, VgicStateError> {
        let at = self.at;
        let v = self.u32()?;
        if ok(v) {
            Ok(v)
        } else {
            Err(field(at, name, v.into()))
        }
    }

    /// One interrupt record; `bank` is the vCPU of a private interrupt, `None` for an SPI.
    fn irq(&mut self, vcpus: usize, id: Intid, bank: Option<usize>) -> Result<Irq, VgicStateError> {
        let at = self.at;
        let flags = self.field("interrupt flags", |f| f & !IRQ_FLAGS == 0)?;
        let prio = self.take(4)?;
        let priority = prio[0];
        if priority & !PRIORITY_MASK != 0 || prio[1..] != [0, 0, 0] {
            return Err(field(
                at + 4,
                "priority",
                u32::from_le_bytes([prio[0], prio[1], prio[2], prio[3]]).into(),
            ));
        }
        let has = |bit| flags & bit != 0;
        let pintid = self.field("physical INTID", |p| {
            if has(HW) {
                bank.is_some() && p <= MAX_PINTID
            } else {
                p == 0
            }
        })?;
        let owner = self.field("owner", |o| {
            if has(OWNED) {
                // Owned without list registers means active there (invariant G2), and a
                // private interrupt only ever in its own vCPU's (G1).
                has(ACTIVE) && (o as usize) < vcpus && bank.is_none_or(|v| v == o as usize)
            } else {
                o == 0
            }
        })?;
        let route_at = self.at;
        let route = self.u64()?;
        let route_ok = match bank {
            Some(_) => route == 0,
            None => route & !(AFF_MASK | IROUTER_IRM) == 0,
        };
        if !route_ok {
            return Err(field(route_at, "GICD_IROUTER", route));
        }
        if id.is_sgi() && !has(EDGE) {
            return Err(field(at, "SGI trigger (must be edge)", flags.into()));
        }
        Ok(Irq {
            enabled: has(ENABLED),
            pending_latch: has(PENDING_LATCH),
            line: has(LINE),
            active: has(ACTIVE),
            priority,
            group1: has(GROUP1),
            edge: has(EDGE),
            hw: has(HW).then_some(pintid),
            owner: has(OWNED).then_some(owner as usize),
            route,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vdev::mmio::{AccessSize, MmioDevice};
    use crate::vdev::vgic::{DEFAULT_SPIS, GICR_SGI_BASE, GICR_STRIDE};
    use alloc::string::ToString;
    use proptest::prelude::*;

    const W: AccessSize = AccessSize::Word;
    const UART: Intid = Intid::spi(1);

    /// Two vCPUs as Linux leaves them, with: the UART SPI enabled, its line high, routed to
    /// vCPU 1; an SPI pending but disabled; the timer PPI of vCPU 0 taken by the guest
    /// (active, not deactivated); an SGI pending at vCPU 1; vCPU 1 awake.
    fn busy_gic() -> Vgic {
        let mut g = Vgic::new(2, DEFAULT_SPIS).unwrap();
        let d = |g: &mut Vgic, off: u64, v: u64| g.distributor().write(0, off, W, v).unwrap();
        d(&mut g, 0x84, 0xffff_ffff); // IGROUPR1: SPIs 32..64 group 1
        d(&mut g, 0x420, 0xa0a0_a0a0);
        d(&mut g, 0x100 + 4, 1 << (UART.raw() % 32)); // ISENABLER1
        d(&mut g, 0x0, 0x3); // both groups on
        d(&mut g, 0x204, 1 << 7); // ISPENDR1: SPI 39 pending, left disabled
        g.distributor()
            .write(
                0,
                0x6000 + 8 * u64::from(UART.raw()),
                AccessSize::Double,
                0x1,
            )
            .unwrap(); // route UART to Aff0 = 1
        let r = |g: &mut Vgic, v: u64, off: u64, val: u64| {
            g.redistributors()
                .write(0, v * GICR_STRIDE + off, W, val)
                .unwrap()
        };
        for v in 0..2 {
            r(&mut g, v, GICR_SGI_BASE + 0x80, 0xffff_ffff); // IGROUPR0
            r(&mut g, v, GICR_SGI_BASE + 0x100, 0xffff_ffff); // ISENABLER0
        }
        r(&mut g, 1, 0x14, 0); // GICR_WAKER: vCPU 1 awake
        g.set_spi_level(UART, true).unwrap();
        g.inject_ppi(0, Intid::VTIMER).unwrap();
        g.send_sgi(0, 2 | 3 << 24).unwrap(); // SGI 3 to Aff0 = 1 (target list bit 1)
        // vCPU 0 takes the timer interrupt and exits before deactivating it.
        let f = g.flush(0, 4).unwrap();
        let mut raw: Vec<u64> = (0..4).map(|i| f.raw(i)).collect();
        for lr in &mut raw {
            if *lr as u32 == Intid::VTIMER.raw() {
                *lr = (*lr & !(3 << 62)) | 2 << 62; // pending -> active
            }
        }
        g.sync(0, &raw).unwrap();
        g.check_invariants();
        g
    }

    fn same_model(a: &Vgic, b: &Vgic) {
        assert_eq!(a.ctlr, b.ctlr);
        assert_eq!(a.spis, b.spis);
        assert_eq!(a.cpus.len(), b.cpus.len());
        for (x, y) in a.cpus.iter().zip(&b.cpus) {
            assert_eq!(x.mpidr, y.mpidr);
            assert_eq!(x.private, y.private);
            assert_eq!(x.sleep, y.sleep);
        }
    }

    #[test]
    fn busy_state_round_trips_and_behaves_the_same() {
        let mut g = busy_gic();
        let timer = &g.cpus[0].private[Intid::VTIMER.raw() as usize];
        assert!(
            timer.active && timer.owner == Some(0),
            "the test state has an active interrupt"
        );
        let bytes = g.save_state().unwrap();
        let mut h = Vgic::load_state(2, &bytes).unwrap();
        h.check_invariants();
        same_model(&g, &h);
        assert_eq!(h.save_state().unwrap(), bytes);
        for v in 0..2 {
            assert_eq!(g.flush(v, 4).unwrap(), h.flush(v, 4).unwrap(), "vCPU {v}");
            assert_eq!(g.vcpu_has_pending(v), h.vcpu_has_pending(v));
        }
        assert_eq!(g.spi_target(UART), h.spi_target(UART));
        assert_eq!(h.spi_target(UART), Ok(Some(1)));
    }

    #[test]
    fn fresh_vgic_round_trips() {
        let g = Vgic::new(3, 96).unwrap();
        let bytes = g.save_state().unwrap();
        assert_eq!(bytes.len(), HEAD_LEN + 3 * CPU_LEN + 96 * IRQ_LEN);
        assert_eq!(&bytes[..8], b"VGIC\x01\0\0\0");
        same_model(&g, &Vgic::load_state(3, &bytes).unwrap());
    }

    #[test]
    fn saving_with_loaded_list_registers_is_refused() {
        let mut g = busy_gic();
        g.flush(1, 4).unwrap();
        assert_eq!(
            g.save_state(),
            Err(VgicStateError::ListRegistersLoaded { vcpu: 1 })
        );
    }

    fn irq_at(vcpu: usize, intid: usize) -> usize {
        HEAD_LEN + vcpu * CPU_LEN + 16 + intid * IRQ_LEN
    }

    #[test]
    fn bad_states_are_refused() {
        let g = busy_gic();
        let good = g.save_state().unwrap();
        let spi0 = HEAD_LEN + 2 * CPU_LEN;
        let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            edit(&mut b);
            Vgic::load_state(2, &b).unwrap_err()
        };
        let set32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(bad(&|b| b[0] = b'X'), VgicStateError::BadMagic);
        let e = bad(&|b| set32(b, 4, 2));
        assert_eq!(
            e,
            VgicStateError::Version {
                found: 2,
                supported: 1
            }
        );
        assert!(e.to_string().contains("version 2"));
        assert_eq!(
            Vgic::load_state(3, &good).unwrap_err(),
            VgicStateError::VcpuCount {
                found: 2,
                expected: 3
            }
        );
        assert_eq!(
            bad(&|b| set32(b, 12, 33)),
            VgicStateError::SpiCount { spis: 33 }
        );
        assert_eq!(
            bad(&|b| b.truncate(b.len() - 1)),
            VgicStateError::Truncated {
                len: good.len() - 1,
                needed: good.len()
            }
        );
        assert_eq!(
            bad(&|b| b.push(0)),
            VgicStateError::TrailingBytes {
                len: good.len() + 1,
                expected: good.len()
            }
        );
        assert!(Vgic::load_state(2, &good[..10]).is_err());
        let field_at = |e: VgicStateError| match e {
            VgicStateError::Field { offset, .. } => offset,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field_at(bad(&|b| set32(b, 16, 4))),
            16,
            "GICD_CTLR.ARE is not stored"
        );
        assert_eq!(
            field_at(bad(&|b| b[HEAD_LEN + 7] = 1)),
            HEAD_LEN,
            "MPIDR above Aff3"
        );
        // vCPU 1 given vCPU 0's MPIDR.
        assert_eq!(
            field_at(bad(&|b| b[HEAD_LEN + CPU_LEN] = 0)),
            HEAD_LEN + CPU_LEN
        );
        let sgi3 = irq_at(1, 3);
        assert_eq!(
            field_at(bad(&|b| b[sgi3] &= !(EDGE as u8))),
            sgi3,
            "level SGI"
        );
        assert_eq!(field_at(bad(&|b| b[sgi3 + 1] = 1)), sgi3, "unknown flag");
        assert_eq!(
            field_at(bad(&|b| b[sgi3 + 4] = 0xa1)),
            sgi3 + 4,
            "priority low bits"
        );
        assert_eq!(field_at(bad(&|b| b[sgi3 + 5] = 1)), sgi3 + 4, "reserved");
        // The active timer PPI of vCPU 0: owned by vCPU 1 (not its bank), or no longer active.
        let timer = irq_at(0, 27);
        assert_eq!(field_at(bad(&|b| set32(b, timer + 12, 1))), timer + 12);
        assert_eq!(field_at(bad(&|b| b[timer] &= !(ACTIVE as u8))), timer + 12);
        assert_eq!(
            field_at(bad(&|b| set32(b, timer + 8, MAX_PINTID + 1))),
            timer + 8
        );
        // An SPI linked to hardware, owned by a missing vCPU, routed with RES0 bits.
        assert_eq!(field_at(bad(&|b| b[spi0] |= HW as u8)), spi0 + 8);
        assert_eq!(
            field_at(bad(&|b| {
                b[spi0] |= (OWNED | ACTIVE) as u8;
                set32(b, spi0 + 12, 2);
            })),
            spi0 + 12
        );
        assert_eq!(field_at(bad(&|b| b[spi0 + 19] = 1)), spi0 + 16);
        assert_eq!(
            field_at(bad(&|b| b[irq_at(0, 5) + 16] = 1)),
            irq_at(0, 5) + 16,
            "routed SGI"
        );
    }

    #[test]
    fn every_byte_change_is_refused_or_loads_a_consistent_vgic() {
        let good = busy_gic().save_state().unwrap();
        let mut b = good.clone();
        for at in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                b[at] ^= x;
                if let Ok(g) = Vgic::load_state(2, &b) {
                    g.check_invariants();
                    assert_eq!(
                        g.save_state().unwrap(),
                        b,
                        "accepted bytes re-save identically"
                    );
                }
                b[at] ^= x;
            }
        }
    }

    proptest! {
        #[test]
        fn random_blobs_never_panic(tail in prop::collection::vec(any::<u8>(), 0..2000), keep in 0usize..24) {
            let mut b = busy_gic().save_state().unwrap();
            b.truncate(keep);
            b.extend_from_slice(&tail);
            if let Ok(g) = Vgic::load_state(2, &b) {
                g.check_invariants();
            }
        }
    }
}
