//! Portable pieces of EL2 interrupt handling: the INTID → handler table the IRQ vector
//! dispatches through, and the ICC_SGI1R_EL1 encoding that sends a physical SGI to one CPU
//! (used to kick a vCPU running on another pCPU out of its guest).
//!
//! Invariants (checked by `IrqTable::check_invariants` in tests):
//! - an INTID has at most one handler; registering a second one is an error, not a silent
//!   replacement (two drivers fighting over one line would lose interrupts);
//! - only INTIDs below [`MAX_INTID`] (SGIs, PPIs and SPIs; no special or LPI INTIDs) have slots.
#![forbid(unsafe_code)]

use core::fmt;

/// One past the largest INTID with a slot: SGIs 0..16, PPIs 16..32, SPIs 32..1020.
pub const MAX_INTID: u32 = 1020;

/// First INTID of the special range (1020..1024): 1023 = no pending interrupt (spurious).
pub const SPURIOUS_INTID: u32 = 1023;

/// An interrupt handler: called with the acknowledged INTID at EL2, interrupts masked.
pub type Handler = fn(u32);

/// Failure to register or unregister a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerError {
    /// The INTID is not an SGI, PPI or SPI.
    OutOfRange { intid: u32 },
    /// Another handler already owns the INTID.
    AlreadyRegistered { intid: u32 },
    /// Unregistering an INTID that has no handler.
    NotRegistered { intid: u32 },
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { intid } => write!(
                f,
                "cannot use INTID {intid}: only SGIs, PPIs and SPIs (below {MAX_INTID}) have handlers"
            ),
            Self::AlreadyRegistered { intid } => {
                write!(
                    f,
                    "cannot register a handler for INTID {intid}: it already has one"
                )
            }
            Self::NotRegistered { intid } => {
                write!(
                    f,
                    "cannot unregister the handler for INTID {intid}: it has none"
                )
            }
        }
    }
}

/// What [`IrqTable::dispatch`] did with an acknowledged INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// A handler ran.
    Handled,
    /// Spurious or special INTID (1020..=1023): nothing to end.
    Spurious,
    /// No handler: the caller logs it and still ends the interrupt.
    Unhandled,
}

/// The INTID → handler table.
pub struct IrqTable {
    handlers: [Option<Handler>; MAX_INTID as usize],
}

impl Default for IrqTable {
    fn default() -> Self {
        Self::new()
    }
}

impl IrqTable {
    /// An empty table (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            handlers: [None; MAX_INTID as usize],
        }
    }

    fn slot(&mut self, intid: u32) -> Result<&mut Option<Handler>, HandlerError> {
        self.handlers
            .get_mut(intid as usize)
            .ok_or(HandlerError::OutOfRange { intid })
    }

    /// Makes `handler` the one called for `intid`.
    ///
    /// # Errors
    /// [`HandlerError::OutOfRange`], [`HandlerError::AlreadyRegistered`].
    pub fn register(&mut self, intid: u32, handler: Handler) -> Result<(), HandlerError> {
        let slot = self.slot(intid)?;
        if slot.is_some() {
            return Err(HandlerError::AlreadyRegistered { intid });
        }
        *slot = Some(handler);
        Ok(())
    }

    /// Removes `intid`'s handler.
    ///
    /// # Errors
    /// [`HandlerError::OutOfRange`], [`HandlerError::NotRegistered`].
    pub fn unregister(&mut self, intid: u32) -> Result<(), HandlerError> {
        self.slot(intid)?
            .take()
            .map(|_| ())
            .ok_or(HandlerError::NotRegistered { intid })
    }

    /// The handler for `intid`, if any. Copying it out lets the caller drop the table's lock
    /// before running it.
    pub fn handler(&self, intid: u32) -> Option<Handler> {
        self.handlers.get(intid as usize).copied().flatten()
    }

    /// Runs `intid`'s handler.
    pub fn dispatch(&self, intid: u32) -> Dispatch {
        if (MAX_INTID..1024).contains(&intid) {
            return Dispatch::Spurious;
        }
        match self.handler(intid) {
            Some(h) => {
                h(intid);
                Dispatch::Handled
            }
            None => Dispatch::Unhandled,
        }
    }

    /// Number of INTIDs with a handler.
    pub fn registered(&self) -> usize {
        self.handlers.iter().flatten().count()
    }
}

/// ICC_SGI1R_EL1 value that sends SGI `intid` (0..16) to the single CPU whose MPIDR affinity
/// is `mpidr` (Aff3..Aff0 as in MPIDR_EL1; other bits ignored). IRM = 0: targeted, not
/// broadcast. Aff0 is split into the range selector RS (Aff0 / 16) and one TargetList bit
/// (Aff0 % 16), so CPUs with Aff0 ≥ 16 are reachable (needs ICC_CTLR_EL1.RSS on hardware).
pub fn sgi1r(mpidr: u64, intid: u8) -> u64 {
    assert!(intid < 16, "SGI INTID {intid} out of range");
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    (1 << (aff0 % 16))
        | (aff1 << 16)
        | (u64::from(intid) << 24)
        | (aff2 << 32)
        | ((aff0 / 16) << 44)
        | (aff3 << 48)
}

/// The MPIDR affinity an ICC_SGI1R_EL1 value targets, when it targets exactly one CPU
/// (inverse of [`sgi1r`]; used to check it and by the vGIC's trapped-SGI decode in tests).
pub fn sgi1r_target(value: u64) -> Option<(u64, u8)> {
    let list = value & 0xffff;
    if value & (1 << 40) != 0 || list.count_ones() != 1 {
        return None;
    }
    let aff0 = ((value >> 44) & 0xf) * 16 + u64::from(list.trailing_zeros());
    let aff1 = (value >> 16) & 0xff;
    let aff2 = (value >> 32) & 0xff;
    let aff3 = (value >> 48) & 0xff;
    let intid = ((value >> 24) & 0xf) as u8;
    Some((aff0 | (aff1 << 8) | (aff2 << 16) | (aff3 << 32), intid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    static LAST: AtomicU32 = AtomicU32::new(0);
    fn record(intid: u32) {
        LAST.store(intid, Ordering::SeqCst);
    }
    fn other(_: u32) {}

    #[test]
    fn dispatch_runs_the_registered_handler_only() {
        let mut t = IrqTable::new();
        t.register(26, record).unwrap();
        assert_eq!(t.dispatch(26), Dispatch::Handled);
        assert_eq!(LAST.load(Ordering::SeqCst), 26);
        assert_eq!(t.dispatch(27), Dispatch::Unhandled);
        assert_eq!(t.dispatch(SPURIOUS_INTID), Dispatch::Spurious);
        assert_eq!(t.dispatch(1020), Dispatch::Spurious);
        assert_eq!(t.registered(), 1);
    }

    #[test]
    fn one_handler_per_intid() {
        let mut t = IrqTable::new();
        t.register(1, other).unwrap();
        assert_eq!(
            t.register(1, record),
            Err(HandlerError::AlreadyRegistered { intid: 1 })
        );
        assert_eq!(t.unregister(1), Ok(()));
        assert_eq!(
            t.unregister(1),
            Err(HandlerError::NotRegistered { intid: 1 })
        );
        t.register(1, record).unwrap();
        assert!(t.handler(1).is_some());
    }

    #[test]
    fn special_intids_have_no_slot() {
        let mut t = IrqTable::new();
        assert_eq!(
            t.register(MAX_INTID, other),
            Err(HandlerError::OutOfRange { intid: 1020 })
        );
        assert_eq!(
            t.unregister(5000),
            Err(HandlerError::OutOfRange { intid: 5000 })
        );
        t.register(MAX_INTID - 1, other).unwrap();
    }

    #[test]
    fn sgi1r_fields() {
        // CPU 0.0.0.3, SGI 1: TargetList bit 3, INTID in [27:24].
        assert_eq!(sgi1r(3, 1), (1 << 3) | (1 << 24));
        // Aff1 = 2, Aff2 = 5, Aff3 = 7, Aff0 = 0x21 → RS = 2, bit 1.
        let v = sgi1r(0x07_0005_0221, 15);
        assert_eq!(v & 0xffff, 1 << 1);
        assert_eq!((v >> 16) & 0xff, 2);
        assert_eq!((v >> 24) & 0xf, 15);
        assert_eq!((v >> 32) & 0xff, 5);
        assert_eq!((v >> 40) & 1, 0, "targeted, not broadcast");
        assert_eq!((v >> 44) & 0xf, 2);
        assert_eq!((v >> 48) & 0xff, 7);
        // MPIDR bits outside the affinity fields (U, MT, RES1) are ignored.
        assert_eq!(sgi1r(0x8000_0000 | 3, 1), sgi1r(3, 1));
    }

    #[test]
    fn sgi1r_round_trips_every_affinity_byte() {
        for aff0 in 0..=255u64 {
            for (aff1, aff2, aff3) in [(0, 0, 0), (1, 2, 3), (255, 255, 255)] {
                let mpidr = aff0 | (aff1 << 8) | (aff2 << 16) | (aff3 << 32);
                let intid = (aff0 % 16) as u8;
                assert_eq!(sgi1r_target(sgi1r(mpidr, intid)), Some((mpidr, intid)));
            }
        }
        assert_eq!(
            sgi1r_target(1 << 40),
            None,
            "broadcast has no single target"
        );
        assert_eq!(sgi1r_target(0b11), None, "two targets");
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn sgi_intid_above_15_is_a_bug() {
        sgi1r(0, 16);
    }

    #[test]
    fn errors_read_as_sentences() {
        let s = HandlerError::AlreadyRegistered { intid: 26 }.to_string();
        assert!(s.starts_with("cannot register") && !s.ends_with('.'));
    }
}
