//! The EL1 physical timer (CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0), emulated: its
//! interrupt would reach the physical GIC, so the guest's accesses trap (CNTHCTL_EL2.EL1PCEN =
//! 0) and land here. Firmware, RTOS guests and test suites use this timer; KVM emulates it too.
//!
//! The guest's physical counter (`CNTPCT_EL0`, trapped too: EL1PCTEN = 0) is the host's
//! minus the VM's counter offset, the same offset as its virtual counter, as under KVM: so the
//! guest's two counters agree, and a snapshot restored on another machine (whose counter
//! offset keeps the guest's time going on) finds its physical timer's compare value still in
//! the guest's time base. The timer's output, `ENABLE && !IMASK && counter >= CVAL`, drives the
//! guest's PPI 30 ([`PTIMER_INTID`]) as a level; the arch layer arms the EL2 timer for its
//! deadline plus the offset.
#![forbid(unsafe_code)]

use super::vgic::Intid;
use crate::esr::SysReg;

/// The non-secure EL1 physical timer's PPI (INTID 30), as the guest's DT describes it.
pub const PTIMER_INTID: Intid = Intid::ppi(14);

/// CNTP_CTL_EL0 bits.
pub const CTL_ENABLE: u64 = 1 << 0;
pub const CTL_IMASK: u64 = 1 << 1;
pub const CTL_ISTATUS: u64 = 1 << 2;

/// One of the timer's registers, or the physical counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerReg {
    Tval,
    Ctl,
    Cval,
    /// CNTPCT_EL0, read-only.
    Count,
}

impl TimerReg {
    /// The register a trapped MRS/MSR names, if it is one of the EL1 physical timer's
    /// (op0 3, op1 3, CRn 14, CRm 2, op2 0/1/2) or the physical counter (CRm 0, op2 1).
    pub fn decode(reg: SysReg) -> Option<Self> {
        match (reg.op0, reg.op1, reg.crn, reg.crm, reg.op2) {
            (3, 3, 14, 2, 0) => Some(Self::Tval),
            (3, 3, 14, 2, 1) => Some(Self::Ctl),
            (3, 3, 14, 2, 2) => Some(Self::Cval),
            (3, 3, 14, 0, 1) => Some(Self::Count),
            _ => None,
        }
    }
}

/// One vCPU's EL1 physical timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysTimer {
    /// ENABLE and IMASK as the guest wrote them (ISTATUS is computed on reads).
    ctl: u64,
    cval: u64,
}

impl PhysTimer {
    /// A timer with these register values (from a snapshot); ISTATUS and unknown bits are
    /// dropped.
    pub const fn from_saved(ctl: u64, cval: u64) -> Self {
        Self {
            ctl: ctl & (CTL_ENABLE | CTL_IMASK),
            cval,
        }
    }

    /// (CTL, CVAL) to save.
    pub const fn saved(&self) -> (u64, u64) {
        (self.ctl, self.cval)
    }

    /// The timer condition holds: enabled and the counter has reached CVAL.
    fn met(&self, now: u64) -> bool {
        self.ctl & CTL_ENABLE != 0 && now >= self.cval
    }

    /// What an MRS of `reg` returns at the guest's physical counter value `now`.
    pub fn read(&self, reg: TimerReg, now: u64) -> u64 {
        match reg {
            TimerReg::Count => now,
            TimerReg::Ctl => self.ctl | if self.met(now) { CTL_ISTATUS } else { 0 },
            TimerReg::Cval => self.cval,
            // TVAL reads as the low 32 bits of CVAL - counter, a signed countdown; the upper
            // half is RES0.
            TimerReg::Tval => u64::from(self.cval.wrapping_sub(now) as u32),
        }
    }

    /// An MSR of `value` to `reg` at counter value `now` (the counter is read-only: the caller
    /// makes such an MSR UNDEFINED, and here it changes nothing).
    pub fn write(&mut self, reg: TimerReg, value: u64, now: u64) {
        match reg {
            TimerReg::Count => {}
            TimerReg::Ctl => self.ctl = value & (CTL_ENABLE | CTL_IMASK),
            TimerReg::Cval => self.cval = value,
            // CVAL = counter + TVAL, TVAL taken as a signed 32-bit value.
            TimerReg::Tval => self.cval = now.wrapping_add(i64::from(value as u32 as i32) as u64),
        }
    }

    /// The interrupt line at counter value `now`.
    pub fn level(&self, now: u64) -> bool {
        self.met(now) && self.ctl & CTL_IMASK == 0
    }

    /// When the line will rise if nothing is written: the compare value, while the timer is
    /// enabled, unmasked and not yet expired at `now`.
    pub fn deadline(&self, now: u64) -> Option<u64> {
        (self.ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE && now < self.cval).then_some(self.cval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTL: SysReg = SysReg::new(3, 3, 14, 2, 1);

    #[test]
    fn only_the_el1_physical_timer_registers_decode() {
        assert_eq!(TimerReg::decode(CTL), Some(TimerReg::Ctl));
        assert_eq!(
            TimerReg::decode(SysReg::new(3, 3, 14, 2, 0)),
            Some(TimerReg::Tval)
        );
        assert_eq!(
            TimerReg::decode(SysReg::new(3, 3, 14, 2, 2)),
            Some(TimerReg::Cval)
        );
        assert_eq!(
            TimerReg::decode(SysReg::new(3, 3, 14, 0, 1)),
            Some(TimerReg::Count)
        );
        // The virtual timer (CRm 3), the virtual counter (CRm 0 op2 2), another op2.
        for reg in [
            SysReg::new(3, 3, 14, 3, 1),
            SysReg::new(3, 3, 14, 0, 2),
            SysReg::new(3, 3, 14, 2, 3),
            SysReg::new(3, 4, 14, 2, 1),
        ] {
            assert_eq!(TimerReg::decode(reg), None, "{reg}");
        }
    }

    #[test]
    fn the_line_follows_enable_mask_and_compare() {
        let mut t = PhysTimer::default();
        assert!(!t.level(u64::MAX), "reset: disabled");
        assert_eq!(t.read(TimerReg::Count, 1234), 1234);
        t.write(TimerReg::Count, 5, 1234);
        assert_eq!(t, PhysTimer::default(), "the counter is read-only");
        t.write(TimerReg::Cval, 1000, 0);
        t.write(TimerReg::Ctl, CTL_ENABLE, 0);
        assert!(!t.level(999));
        assert_eq!(t.deadline(999), Some(1000));
        assert!(t.level(1000));
        assert_eq!(t.deadline(1000), None, "expired: nothing to wait for");
        assert_eq!(t.read(TimerReg::Ctl, 1000), CTL_ENABLE | CTL_ISTATUS);
        // Masked: the condition still shows in ISTATUS, the line is low.
        t.write(TimerReg::Ctl, CTL_ENABLE | CTL_IMASK, 1000);
        assert!(!t.level(2000));
        assert_eq!(t.deadline(500), None);
        assert_eq!(
            t.read(TimerReg::Ctl, 2000),
            CTL_ENABLE | CTL_IMASK | CTL_ISTATUS
        );
        // Disabled: no condition at all; ISTATUS written by the guest is ignored.
        t.write(TimerReg::Ctl, CTL_ISTATUS, 2000);
        assert!(!t.level(2000));
        assert_eq!(t.read(TimerReg::Ctl, 2000), 0);
    }

    #[test]
    fn tval_is_a_signed_32_bit_countdown() {
        let mut t = PhysTimer::default();
        t.write(TimerReg::Tval, 500, 10_000);
        assert_eq!(t.read(TimerReg::Cval, 0), 10_500);
        assert_eq!(t.read(TimerReg::Tval, 10_100), 400);
        // Past the compare value TVAL reads negative (low 32 bits).
        assert_eq!(t.read(TimerReg::Tval, 10_600), u64::from((-100i32) as u32));
        // A negative TVAL sets CVAL in the past; only the low 32 bits of the write count.
        t.write(TimerReg::Tval, 0xdead_0000_ffff_ff9c, 10_000);
        assert_eq!(t.read(TimerReg::Cval, 0), 9_900);
    }

    #[test]
    fn saved_state_round_trips_without_status() {
        let mut t = PhysTimer::default();
        t.write(TimerReg::Ctl, CTL_ENABLE | CTL_IMASK, 0);
        t.write(TimerReg::Cval, 77, 0);
        let (ctl, cval) = t.saved();
        assert_eq!(PhysTimer::from_saved(ctl | CTL_ISTATUS | 1 << 9, cval), t);
    }
}
