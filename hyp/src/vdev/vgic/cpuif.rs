//! The list-register manager: which interrupts go into a vCPU's ICH_LR<n>_EL2 before it runs
//! (`flush`), and what the guest did to them while it ran (`sync`).
//!
//! `flush` rebuilds the list registers from the model each time: interrupts active in the
//! guest first (their deactivation must find them), then pending ones by priority (lower value
//! first), then by INTID. Interrupts that do not fit stay pending in the model, and `underflow`
//! asks the arch layer for a maintenance interrupt (ICH_HCR_EL2.UIE) so they go in as soon as
//! list registers free up.

use super::irq::{Intid, Irq};
use super::lr::{Lr, LrLink, LrState, MAX_LRS};
use super::{Shadow, Vgic, VgicError, deliverable};

/// What to load into a vCPU's list registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flush {
    /// `lrs[i]` for list register `i < n_lrs`; `None` = write 0 (invalid).
    pub lrs: [Option<Lr>; MAX_LRS],
    pub n_lrs: usize,
    /// More interrupts wait than list registers hold: set ICH_HCR_EL2.UIE.
    pub underflow: bool,
}

impl Flush {
    /// The ICH_LR<i>_EL2 value to write.
    pub fn raw(&self, i: usize) -> u64 {
        self.lrs
            .get(i)
            .copied()
            .flatten()
            .map_or(0, |lr| lr.encode())
    }

    /// How many list registers hold an interrupt.
    pub fn used(&self) -> usize {
        self.lrs.iter().flatten().count()
    }
}

/// Sort key: active first, then priority, then INTID.
type Key = (bool, u8, u32);

fn key(irq: &Irq, id: Intid) -> Key {
    (!irq.active, irq.priority, id.raw())
}

impl Vgic {
    /// Chooses the list registers for `vcpu`'s next entry, given that the CPU has `n_lrs` of
    /// them (ICH_VTR_EL2.ListRegs + 1). Interrupts chosen are owned by `vcpu` until the next
    /// [`Vgic::sync`].
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::BadLrCount`], [`VgicError::FlushWithoutSync`]
    /// (the previous flush's list registers were never synced back).
    pub fn flush(&mut self, vcpu: usize, n_lrs: usize) -> Result<Flush, VgicError> {
        if n_lrs == 0 || n_lrs > MAX_LRS {
            return Err(VgicError::BadLrCount { n_lrs });
        }
        if self.cpu(vcpu)?.lrs.iter().any(Option::is_some) {
            return Err(VgicError::FlushWithoutSync { vcpu });
        }
        let ctlr = self.ctlr;
        let wants_lr = |irq: &Irq| irq.active || deliverable(irq, ctlr);

        // Keep the best `n_lrs` candidates sorted in a fixed array: no allocation per entry.
        let mut best: [(Key, Intid); MAX_LRS] =
            [((true, u8::MAX, u32::MAX), Intid::new(0)); MAX_LRS];
        let mut count = 0usize;
        let mut offer = |k: Key, id: Intid, count: &mut usize| {
            let filled = (*count).min(n_lrs);
            *count += 1;
            let pos = best[..filled].partition_point(|(bk, _)| *bk <= k);
            if pos >= n_lrs {
                return;
            }
            let end = filled.min(n_lrs - 1);
            best.copy_within(pos..end, pos + 1);
            best[pos] = (k, id);
        };
        for (i, irq) in self.cpus[vcpu].private.iter().enumerate() {
            if wants_lr(irq) {
                let id = Intid::new(i as u32);
                offer(key(irq, id), id, &mut count);
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if wants_lr(irq) && self.spi_candidate_for(irq, vcpu) {
                let id = Intid::spi(i as u32);
                offer(key(irq, id), id, &mut count);
            }
        }

        let chosen = count.min(n_lrs);
        let mut out = Flush {
            lrs: [None; MAX_LRS],
            n_lrs,
            underflow: count > n_lrs,
        };
        for (slot, &(_, id)) in best[..chosen].iter().enumerate() {
            let irq = self
                .irq_mut(vcpu, id)
                .expect("candidates are implemented interrupts");
            let (lr, latch_moved) = load_lr(irq, id, ctlr);
            irq.owner = Some(vcpu);
            out.lrs[slot] = Some(lr);
            self.cpus[vcpu].lrs[slot] = Some(Shadow { lr, latch_moved });
        }
        self.release_unloaded(vcpu);
        Ok(out)
    }

    /// Folds back what the guest did to the list registers the last [`Vgic::flush`] of `vcpu`
    /// loaded; `lrs[i]` is the value read from ICH_LR<i>_EL2 (at least as many as were used).
    /// A list register that went invalid was acknowledged and deactivated: its pending state is
    /// consumed, and a level-sensitive interrupt whose line is still high is pending again.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::ShortSync`].
    ///
    /// # Panics
    /// In debug builds, when a read-back list register names another INTID than was written
    /// (the arch layer wrote or read the wrong register).
    pub fn sync(&mut self, vcpu: usize, lrs: &[u64]) -> Result<(), VgicError> {
        let cpu = self.cpu(vcpu)?;
        let needed = cpu
            .lrs
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        if lrs.len() < needed {
            return Err(VgicError::ShortSync {
                vcpu,
                given: lrs.len(),
                needed,
            });
        }
        if needed > 0 {
            self.generation += 1;
        }
        for (slot, &raw) in lrs.iter().enumerate().take(needed) {
            let Some(shadow) = self.cpus[vcpu].lrs[slot].take() else {
                continue;
            };
            let back = Lr::decode(raw);
            // Hardware only changes the State field; an invalid LR's other bits do not matter.
            debug_assert!(
                back.state == LrState::Invalid || back.vintid == shadow.lr.vintid,
                "ICH_LR{slot}_EL2 of vCPU {vcpu} changed INTID from {:?} to {:?}: the arch layer mixed up list registers",
                shadow.lr.vintid,
                back.vintid
            );
            let id = shadow.lr.vintid;
            let irq = self
                .irq_mut(vcpu, id)
                .expect("shadowed interrupts are implemented");
            if back.state.is_pending() && shadow.latch_moved {
                irq.pending_latch = true;
            }
            irq.active = back.state.is_active();
            if !irq.active {
                irq.owner = None;
            }
        }
        Ok(())
    }

    /// After a flush: owned interrupts in no list register keep ownership only while active.
    fn release_unloaded(&mut self, vcpu: usize) {
        let loaded = self.cpus[vcpu].lrs;
        let in_lr = |id: Intid| loaded.iter().flatten().any(|s| s.lr.vintid == id);
        for (i, irq) in self.spis.iter_mut().enumerate() {
            if irq.owner == Some(vcpu) && !irq.active && !in_lr(Intid::spi(i as u32)) {
                irq.owner = None;
            }
        }
        for (i, irq) in self.cpus[vcpu].private.iter_mut().enumerate() {
            if irq.owner == Some(vcpu) && !irq.active && !in_lr(Intid::new(i as u32)) {
                irq.owner = None;
            }
        }
    }
}

/// The list register for `irq`, and whether its pending latch moved into it (the latch is
/// cleared: from now on the list register holds that pending state).
fn load_lr(irq: &mut Irq, id: Intid, ctlr: u32) -> (Lr, bool) {
    let pending = deliverable(irq, ctlr);
    let link = match irq.hw {
        Some(pintid) => LrLink::Hardware { pintid },
        None => LrLink::Virtual {
            eoi_maintenance: !irq.edge,
        },
    };
    // A hardware-linked interrupt that is active in the guest cannot also be pending in the
    // list register; it goes in once the guest deactivates it.
    let pending = pending && !(irq.active && matches!(link, LrLink::Hardware { .. }));
    let latch_moved = pending && irq.pending_latch;
    if latch_moved {
        irq.pending_latch = false;
    }
    let lr = Lr {
        vintid: id,
        state: LrState::new(pending, irq.active),
        priority: irq.priority,
        group1: irq.group1,
        link,
    };
    (lr, latch_moved)
}
