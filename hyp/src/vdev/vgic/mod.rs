//! Virtual GICv3: distributor, one redistributor per vCPU, per-interrupt state and the
//! list-register manager that feeds the hardware virtual CPU interface.
//!
//! Modelled subset (what Linux's irq-gic-v3 driver uses): affinity routing always on
//! (ARE RAO/WI), a single security state (GICD_CTLR.DS = 1, so IGRPMODR and NSACR are RAZ/WI),
//! groups 0 and 1, no LPIs or ITS, no GICv2 compatibility (ITARGETSR, SGIR RAZ/WI).
//!
//! Flow, per vCPU: on every exit the arch layer reads back the list registers it wrote and
//! calls [`Vgic::sync`]; MMIO, SGI and device events update the model; before entry it calls
//! [`Vgic::flush`] and writes the returned list registers (and ICH_HCR_EL2.UIE when
//! `underflow` is set). The whole `Vgic` sits behind one lock.
//!
//! Invariants (checked by [`Vgic::check_invariants`] after every operation in the tests):
//! - G1: an interrupt is in at most one vCPU's list registers, and `owner` names that vCPU.
//!   Private interrupts are only ever in their own vCPU's list registers.
//! - G2: an interrupt in a list register has `owner == Some(vcpu)`; an interrupt owned by a vCPU
//!   but in none of its list registers is active there (its deactivation is still to come).
//! - G3: a hardware-linked list register is never pending-and-active (the physical distributor
//!   holds that pending state).
//! - G4: SGIs are edge-triggered; stored priorities have only [`irq::PRIORITY_MASK`] bits.
//!
//! Known simplification: the model's view of an interrupt held in a *running* vCPU's list
//! registers is its state at flush time (MMIO from another vCPU that changes it, e.g.
//! ICPENDR, takes effect in the model and is reconciled at that vCPU's next sync).

mod bank;
pub mod cpuif;
pub mod distributor;
pub mod irq;
pub mod lr;
pub mod redistributor;
pub mod sgi;
pub mod state;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

pub use cpuif::Flush;
pub use distributor::Distributor;
pub use irq::Intid;
pub use lr::{Lr, LrLink, LrState, MAX_LRS};
pub use redistributor::Redistributors;
pub use sgi::{SgiRequest, SgiTargets};

use irq::Irq;

/// Size of the distributor's MMIO window.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Each vCPU's redistributor: RD_base then SGI_base, 64 KiB each.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The SGI_base frame's offset inside a redistributor.
pub const GICR_SGI_BASE: u64 = 0x1_0000;
/// Most vCPUs one `Vgic` serves (the width of [`VcpuMask`]).
pub const MAX_VCPUS: usize = 128;
/// Default SPI count: INTIDs 32..96, room for every SPI the guest DTB hands out.
pub const DEFAULT_SPIS: u32 = 64;

/// A set of vCPU indices (the vCPUs an event made runnable, to kick).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuMask(u128);

impl VcpuMask {
    pub const EMPTY: Self = Self(0);

    pub fn insert(&mut self, vcpu: usize) {
        debug_assert!(vcpu < MAX_VCPUS);
        self.0 |= 1 << vcpu;
    }

    pub fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_VCPUS).filter(move |&v| self.contains(v))
    }
}

impl fmt::Debug for VcpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Why a vGIC request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// No such vCPU.
    NoSuchVcpu { vcpu: usize, vcpus: usize },
    /// A vGIC needs 1..=MAX_VCPUS vCPUs.
    BadVcpuCount { vcpus: usize },
    /// The SPI count must be a multiple of 32 with the last INTID below 1020.
    BadSpiCount { spis: u32 },
    /// The INTID is not an SPI this vGIC implements.
    NotAnSpi { intid: Intid },
    /// The INTID is not a PPI.
    NotAPpi { intid: Intid },
    /// The physical INTID does not fit a list register's pINTID field.
    BadPhysicalIntid { pintid: u32 },
    /// More list registers than the architecture allows, or none.
    BadLrCount { n_lrs: usize },
    /// `flush` called again without the `sync` of the previous entry.
    FlushWithoutSync { vcpu: usize },
    /// `sync` got fewer list-register values than the last `flush` wrote.
    ShortSync {
        vcpu: usize,
        given: usize,
        needed: usize,
    },
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchVcpu { vcpu, vcpus } => {
                write!(f, "cannot address vCPU {vcpu}: the vGIC has {vcpus} vCPUs")
            }
            Self::BadVcpuCount { vcpus } => write!(
                f,
                "cannot build a vGIC for {vcpus} vCPUs: it supports 1 to {MAX_VCPUS}"
            ),
            Self::BadSpiCount { spis } => write!(
                f,
                "cannot build a vGIC with {spis} SPIs: the count must be a multiple of 32 up to 960"
            ),
            Self::NotAnSpi { intid } => {
                write!(
                    f,
                    "cannot drive INTID {intid} as an SPI: this vGIC does not implement it"
                )
            }
            Self::NotAPpi { intid } => {
                write!(f, "cannot inject INTID {intid} as a PPI: PPIs are 16 to 31")
            }
            Self::BadPhysicalIntid { pintid } => write!(
                f,
                "cannot link physical INTID {pintid}: a list register holds at most {}",
                lr::MAX_PINTID
            ),
            Self::BadLrCount { n_lrs } => {
                write!(
                    f,
                    "cannot use {n_lrs} list registers: the architecture allows 1 to {MAX_LRS}"
                )
            }
            Self::FlushWithoutSync { vcpu } => write!(
                f,
                "cannot flush vCPU {vcpu}'s list registers: the previous contents were not synced back"
            ),
            Self::ShortSync {
                vcpu,
                given,
                needed,
            } => write!(
                f,
                "cannot sync vCPU {vcpu}: got {given} list registers, the last flush wrote {needed}"
            ),
        }
    }
}

/// What a list register was loaded with, kept until the vCPU's next exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shadow {
    pub lr: Lr,
    /// The pending latch moved into the list register (so a still-pending LR restores it).
    pub latch_moved: bool,
}

/// Per-vCPU state: the banked SGIs/PPIs, the redistributor's own registers and the shadow of
/// the list registers.
#[derive(Clone, Debug)]
pub(crate) struct VcpuIrqs {
    pub mpidr: u64,
    pub private: [Irq; 32],
    /// GICR_WAKER.ProcessorSleep.
    pub sleep: bool,
    pub lrs: [Option<Shadow>; MAX_LRS],
}

/// GICD_CTLR bits kept (DS = 1 layout).
pub(crate) const CTLR_ENABLE_GRP0: u32 = 1 << 0;
pub(crate) const CTLR_ENABLE_GRP1: u32 = 1 << 1;
pub(crate) const CTLR_ARE: u32 = 1 << 4;
pub(crate) const CTLR_DS: u32 = 1 << 6;

/// The whole virtual GIC of one VM.
#[derive(Clone, Debug)]
pub struct Vgic {
    pub(crate) cpus: Vec<VcpuIrqs>,
    pub(crate) spis: Vec<Irq>,
    /// GICD_CTLR group enables.
    pub(crate) ctlr: u32,
    /// Bumped by everything that may change what a vCPU's list registers should hold, so the
    /// run loop can skip rebuilding them when nothing did (see [`Vgic::generation`]).
    pub(crate) generation: u64,
}

impl Vgic {
    /// A vGIC whose vCPU `i` has the MPIDR of `guest_loader::guest_dtb::vcpu_mpidr(i)` (what the
    /// guest DTB says), with `spis` SPIs; the virtual timer PPI of every vCPU is linked to the
    /// physical one (INTID 27).
    ///
    /// # Errors
    /// [`VgicError::BadVcpuCount`], [`VgicError::BadSpiCount`].
    pub fn new(vcpus: usize, spis: u32) -> Result<Self, VgicError> {
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(VgicError::BadVcpuCount { vcpus });
        }
        let mpidrs = (0..vcpus)
            .map(|i| guest_loader::guest_dtb::vcpu_mpidr(i as u32))
            .collect();
        let mut gic = Self::with_mpidrs(mpidrs, spis)?;
        for v in 0..vcpus {
            gic.link_hw(v, Intid::VTIMER, Intid::VTIMER.raw())?;
        }
        Ok(gic)
    }

    /// A vGIC for vCPUs with the given MPIDR_EL1 values (only the affinity fields matter), and
    /// no hardware-linked interrupts.
    ///
    /// # Errors
    /// [`VgicError::BadVcpuCount`], [`VgicError::BadSpiCount`].
    pub fn with_mpidrs(mpidrs: Vec<u64>, spis: u32) -> Result<Self, VgicError> {
        if mpidrs.is_empty() || mpidrs.len() > MAX_VCPUS {
            return Err(VgicError::BadVcpuCount {
                vcpus: mpidrs.len(),
            });
        }
        if spis == 0 || !spis.is_multiple_of(32) || Intid::SPI_BASE + spis > 992 {
            return Err(VgicError::BadSpiCount { spis });
        }
        let cpus = mpidrs
            .into_iter()
            .map(|mpidr| {
                let mut private = [Irq::reset(false); 32];
                for sgi in &mut private[..16] {
                    sgi.edge = true;
                }
                VcpuIrqs {
                    mpidr: mpidr & AFF_MASK,
                    private,
                    sleep: true,
                    lrs: [None; MAX_LRS],
                }
            })
            .collect();
        Ok(Self {
            cpus,
            spis: alloc::vec![Irq::reset(false); spis as usize],
            ctlr: 0,
            generation: 0,
        })
    }

    /// A number that changes whenever an interrupt may have become pending, enabled, routed
    /// or otherwise changed (device lines, SGIs, register accesses, list registers folded
    /// back). A vCPU whose last flush loaded no list register and asked for no maintenance
    /// needs no new flush while this stays the same: the flush would load nothing again.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn vcpus(&self) -> usize {
        self.cpus.len()
    }

    /// Number of SPIs implemented (INTIDs 32 .. 32 + this).
    pub fn spi_count(&self) -> u32 {
        self.spis.len() as u32
    }

    /// The MPIDR affinity of vCPU `vcpu`.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`].
    pub fn mpidr(&self, vcpu: usize) -> Result<u64, VgicError> {
        Ok(self.cpu(vcpu)?.mpidr)
    }

    /// The distributor's MMIO view.
    pub fn distributor(&mut self) -> Distributor<'_> {
        self.generation += 1;
        Distributor::new(self)
    }

    /// The redistributors' MMIO view (frame `i` at `i * GICR_STRIDE` is vCPU `i`'s).
    pub fn redistributors(&mut self) -> Redistributors<'_> {
        self.generation += 1;
        Redistributors::new(self)
    }

    /// Ties virtual PPI/SGI `intid` of `vcpu` to physical INTID `pintid`, so list registers
    /// carry HW = 1 and the guest's deactivation reaches the physical interrupt.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`] (only private interrupts can be linked
    /// here), [`VgicError::BadPhysicalIntid`].
    pub fn link_hw(&mut self, vcpu: usize, intid: Intid, pintid: u32) -> Result<(), VgicError> {
        self.generation += 1;
        if !intid.is_private() {
            return Err(VgicError::NotAPpi { intid });
        }
        if pintid > lr::MAX_PINTID {
            return Err(VgicError::BadPhysicalIntid { pintid });
        }
        self.cpu_mut(vcpu)?.private[intid.raw() as usize].hw = Some(pintid);
        Ok(())
    }

    /// Removes a hardware link made by [`Vgic::link_hw`].
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`].
    pub fn unlink_hw(&mut self, vcpu: usize, intid: Intid) -> Result<(), VgicError> {
        self.generation += 1;
        if !intid.is_private() {
            return Err(VgicError::NotAPpi { intid });
        }
        self.cpu_mut(vcpu)?.private[intid.raw() as usize].hw = None;
        Ok(())
    }

    /// Drives SPI `intid`'s input line (a device's interrupt output, e.g. the vPL011's). Returns
    /// the vCPU to kick when the change made the interrupt deliverable to it.
    ///
    /// # Errors
    /// [`VgicError::NotAnSpi`].
    pub fn set_spi_level(&mut self, intid: Intid, level: bool) -> Result<Option<usize>, VgicError> {
        self.generation += 1;
        let i = self.spi_index(intid).ok_or(VgicError::NotAnSpi { intid })?;
        let spi = &mut self.spis[i];
        let rising = level && !spi.line;
        spi.line = level;
        if spi.edge && rising {
            spi.pending_latch = true;
        }
        Ok(self.spi_kick_target(i))
    }

    /// Makes SPI `intid` pending once (an edge, or a message). Returns the vCPU to kick.
    ///
    /// # Errors
    /// [`VgicError::NotAnSpi`].
    pub fn pulse_spi(&mut self, intid: Intid) -> Result<Option<usize>, VgicError> {
        self.generation += 1;
        let i = self.spi_index(intid).ok_or(VgicError::NotAnSpi { intid })?;
        self.spis[i].pending_latch = true;
        Ok(self.spi_kick_target(i))
    }

    /// Makes PPI `intid` of `vcpu` pending (e.g. the physical virtual-timer interrupt fired
    /// while `vcpu` ran). Returns whether it is now deliverable, i.e. whether to kick `vcpu`.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`].
    pub fn inject_ppi(&mut self, vcpu: usize, intid: Intid) -> Result<bool, VgicError> {
        self.generation += 1;
        if !intid.is_ppi() {
            return Err(VgicError::NotAPpi { intid });
        }
        let ctlr = self.ctlr;
        let irq = &mut self.cpu_mut(vcpu)?.private[intid.raw() as usize];
        irq.pending_latch = true;
        Ok(deliverable(irq, ctlr))
    }

    /// The source of hardware-fed PPI `intid` of `vcpu` (the virtual timer, injected with
    /// [`Vgic::inject_ppi`] when its physical interrupt fired) no longer asserts: a pending copy
    /// the guest has not taken is withdrawn, as a redistributor drops the pending state of a
    /// level-sensitive interrupt whose line falls. One the guest already activated stays.
    /// Returns whether a copy was withdrawn.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`].
    pub fn withdraw_ppi(&mut self, vcpu: usize, intid: Intid) -> Result<bool, VgicError> {
        if !intid.is_ppi() {
            return Err(VgicError::NotAPpi { intid });
        }
        let irq = &mut self.cpu_mut(vcpu)?.private[intid.raw() as usize];
        if !irq.pending_latch || irq.active {
            return Ok(false);
        }
        irq.pending_latch = false;
        self.generation += 1;
        Ok(true)
    }

    /// Drives the input line of PPI `intid` of `vcpu`. Returns whether it is now deliverable.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`].
    pub fn set_ppi_level(
        &mut self,
        vcpu: usize,
        intid: Intid,
        level: bool,
    ) -> Result<bool, VgicError> {
        self.generation += 1;
        if !intid.is_ppi() {
            return Err(VgicError::NotAPpi { intid });
        }
        let ctlr = self.ctlr;
        let irq = &mut self.cpu_mut(vcpu)?.private[intid.raw() as usize];
        if irq.edge && level && !irq.line {
            irq.pending_latch = true;
        }
        irq.line = level;
        Ok(deliverable(irq, ctlr))
    }

    /// Handles a trapped write of `value` to ICC_SGI1R_EL1 by `sender`: Group 1 SGIs. Returns
    /// the vCPUs that got the SGI pending (to kick). Targets that do not exist are ignored,
    /// like PEs that are not there.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`] for the sender.
    pub fn send_sgi(&mut self, sender: usize, value: u64) -> Result<VcpuMask, VgicError> {
        self.generate_sgi(sender, value, true)
    }

    /// As [`Vgic::send_sgi`] for a write to ICC_SGI0R_EL1: Group 0 SGIs.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`] for the sender.
    pub fn send_sgi0(&mut self, sender: usize, value: u64) -> Result<VcpuMask, VgicError> {
        self.generate_sgi(sender, value, false)
    }

    fn generate_sgi(
        &mut self,
        sender: usize,
        value: u64,
        group1: bool,
    ) -> Result<VcpuMask, VgicError> {
        self.cpu(sender)?;
        self.generation += 1;
        let req = SgiRequest::decode(value);
        let mut hit = VcpuMask::EMPTY;
        for (v, cpu) in self.cpus.iter_mut().enumerate() {
            if !req.targets_mpidr(cpu.mpidr, v == sender) {
                continue;
            }
            // With one security state, an SGI register only generates SGIs of its own group.
            let irq = &mut cpu.private[req.intid.raw() as usize];
            if irq.group1 == group1 {
                irq.pending_latch = true;
                hit.insert(v);
            }
        }
        Ok(hit)
    }

    /// Whether `vcpu` has an interrupt to take (pending, enabled, its group enabled): the
    /// wake-up condition for a trapped WFI. The guest's priority mask is not considered, so
    /// this may wake early, never late.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`].
    pub fn vcpu_has_pending(&self, vcpu: usize) -> Result<bool, VgicError> {
        let cpu = self.cpu(vcpu)?;
        if cpu.lrs.iter().flatten().any(|s| s.lr.state.is_pending()) {
            return Ok(true);
        }
        if cpu.private.iter().any(|irq| deliverable(irq, self.ctlr)) {
            return Ok(true);
        }
        Ok(self
            .spis
            .iter()
            .any(|irq| deliverable(irq, self.ctlr) && self.spi_candidate_for(irq, vcpu)))
    }

    /// Whether `intid` of `vcpu` is pending or active in the model (with the list registers
    /// folded back): false means the guest has no use for it, so a hardware-linked physical
    /// interrupt behind it must not stay active.
    ///
    /// # Errors
    /// [`VgicError::NoSuchVcpu`], [`VgicError::NotAPpi`] for an unimplemented INTID.
    pub fn pending_or_active(&self, vcpu: usize, intid: Intid) -> Result<bool, VgicError> {
        self.cpu(vcpu)?;
        let irq = self.irq(vcpu, intid).ok_or(VgicError::NotAPpi { intid })?;
        Ok(irq.pending() || irq.active)
    }

    /// Which vCPU SPI `intid` is currently routed to (GICD_IROUTER<n>): the vCPU with matching
    /// affinity, vCPU 0 for 1-of-N routing (IRM = 1), `None` when no vCPU matches.
    ///
    /// # Errors
    /// [`VgicError::NotAnSpi`].
    pub fn spi_target(&self, intid: Intid) -> Result<Option<usize>, VgicError> {
        let i = self.spi_index(intid).ok_or(VgicError::NotAnSpi { intid })?;
        Ok(self.route_target(self.spis[i].route))
    }

    /// Panics when a numbered invariant of this module does not hold.
    pub fn check_invariants(&self) {
        for (v, cpu) in self.cpus.iter().enumerate() {
            let mut seen: Vec<u32> = Vec::new();
            for s in cpu.lrs.iter().flatten() {
                let id = s.lr.vintid;
                assert!(
                    !seen.contains(&id.raw()),
                    "G1: {id:?} twice in vCPU {v}'s list registers"
                );
                seen.push(id.raw());
                let irq = self
                    .irq(v, id)
                    .unwrap_or_else(|| panic!("G1: vCPU {v} holds unknown {id:?}"));
                assert_eq!(
                    irq.owner,
                    Some(v),
                    "G2: {id:?} in vCPU {v}'s LRs but owned by {:?}",
                    irq.owner
                );
                if matches!(s.lr.link, LrLink::Hardware { .. }) {
                    assert_ne!(
                        s.lr.state,
                        LrState::PendingActive,
                        "G3: {id:?} HW and pending+active"
                    );
                }
            }
            for (i, irq) in cpu.private.iter().enumerate() {
                assert!(
                    irq.owner.is_none() || irq.owner == Some(v),
                    "G1: vCPU {v}'s INTID {i} owned elsewhere"
                );
                self.check_owned(v, Intid::new(i as u32), irq);
                assert!(
                    i >= 16 || irq.edge,
                    "G4: SGI {i} of vCPU {v} is level-sensitive"
                );
                assert_eq!(
                    irq.priority & !irq::PRIORITY_MASK,
                    0,
                    "G4: INTID {i} priority bits"
                );
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            let id = Intid::spi(i as u32);
            if let Some(o) = irq.owner {
                assert!(o < self.cpus.len(), "G1: {id:?} owned by missing vCPU {o}");
                self.check_owned(o, id, irq);
            }
            assert_eq!(
                irq.priority & !irq::PRIORITY_MASK,
                0,
                "G4: {id:?} priority bits"
            );
        }
    }

    fn check_owned(&self, v: usize, id: Intid, irq: &Irq) {
        if irq.owner != Some(v) {
            return;
        }
        let in_lr = self.cpus[v].lrs.iter().flatten().any(|s| s.lr.vintid == id);
        assert!(
            in_lr || irq.active,
            "G2: {id:?} owned by vCPU {v}, in no LR and not active"
        );
    }

    pub(crate) fn cpu(&self, vcpu: usize) -> Result<&VcpuIrqs, VgicError> {
        let vcpus = self.cpus.len();
        self.cpus
            .get(vcpu)
            .ok_or(VgicError::NoSuchVcpu { vcpu, vcpus })
    }

    pub(crate) fn cpu_mut(&mut self, vcpu: usize) -> Result<&mut VcpuIrqs, VgicError> {
        let vcpus = self.cpus.len();
        self.cpus
            .get_mut(vcpu)
            .ok_or(VgicError::NoSuchVcpu { vcpu, vcpus })
    }

    pub(crate) fn spi_index(&self, intid: Intid) -> Option<usize> {
        let i = intid.raw().checked_sub(Intid::SPI_BASE)? as usize;
        (i < self.spis.len()).then_some(i)
    }

    /// The interrupt `intid` as `vcpu` sees it (banked for private interrupts).
    pub(crate) fn irq(&self, vcpu: usize, intid: Intid) -> Option<&Irq> {
        if intid.is_private() {
            self.cpus
                .get(vcpu)
                .map(|c| &c.private[intid.raw() as usize])
        } else {
            self.spi_index(intid).map(|i| &self.spis[i])
        }
    }

    pub(crate) fn irq_mut(&mut self, vcpu: usize, intid: Intid) -> Option<&mut Irq> {
        if intid.is_private() {
            self.cpus
                .get_mut(vcpu)
                .map(|c| &mut c.private[intid.raw() as usize])
        } else {
            let i = self.spi_index(intid)?;
            Some(&mut self.spis[i])
        }
    }

    pub(crate) fn route_target(&self, route: u64) -> Option<usize> {
        if route & IROUTER_IRM != 0 {
            return Some(0);
        }
        self.cpus.iter().position(|c| c.mpidr == route & AFF_MASK)
    }

    /// Whether `vcpu` may take SPI `irq` now: it holds it, or nobody does and it is routed there.
    pub(crate) fn spi_candidate_for(&self, irq: &Irq, vcpu: usize) -> bool {
        match irq.owner {
            Some(o) => o == vcpu,
            None => self.route_target(irq.route) == Some(vcpu),
        }
    }

    fn spi_kick_target(&self, i: usize) -> Option<usize> {
        let irq = &self.spis[i];
        if !deliverable(irq, self.ctlr) {
            return None;
        }
        irq.owner.or_else(|| self.route_target(irq.route))
    }
}

/// Affinity fields of MPIDR_EL1 and GICD_IROUTER<n> (same positions in both).
pub(crate) const AFF_MASK: u64 = 0xff_00ff_ffff;
pub(crate) const IROUTER_IRM: u64 = 1 << 31;

/// Pending, enabled, and its group enabled in GICD_CTLR: the distributor forwards it.
pub(crate) fn deliverable(irq: &Irq, ctlr: u32) -> bool {
    let group_on = if irq.group1 {
        ctlr & CTLR_ENABLE_GRP1 != 0
    } else {
        ctlr & CTLR_ENABLE_GRP0 != 0
    };
    irq.pending() && irq.enabled && group_on
}
