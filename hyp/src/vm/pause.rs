//! The pause protocol's shared state, portable: who must park, who has, and what each parked
//! vCPU saved.
//!
//! The pauser sets the VM's pause flag (or holds one vCPU) and kicks the vCPUs; each one, at
//! the top of its run loop, sees [`PauseControl::must_park`], saves its whole state with
//! [`PauseControl::park`] and waits at EL2 until it may go, then continues from
//! [`PauseControl::unpark`]'s state.
//! Once [`PauseControl::first_running`] finds no vCPU that is neither parked nor off, nothing
//! writes guest memory or device state: the VM is a coherent image. Saving and loading the
//! state, kicking and waiting are the arch layer's; `S` is its saved-state type.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::sync::Mutex;

/// A VM's pause state, for vCPUs `0..vcpus`.
pub struct PauseControl<S> {
    pause: AtomicBool,
    parked: Vec<AtomicBool>,
    saved: Vec<Mutex<Option<S>>>,
    /// State a vCPU of a restored VM starts from (taken at its first start).
    restore: Vec<Mutex<Option<S>>>,
    /// This vCPU alone parks (the executor's own, for a live snapshot's pre-copy while the
    /// other vCPUs run).
    hold: Vec<AtomicBool>,
}

impl<S: Clone> PauseControl<S> {
    pub fn new(vcpus: usize) -> Self {
        Self {
            pause: AtomicBool::new(false),
            parked: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            saved: (0..vcpus).map(|_| Mutex::new(None)).collect(),
            restore: (0..vcpus).map(|_| Mutex::new(None)).collect(),
            hold: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn pause_requested(&self) -> bool {
        self.pause.load(Ordering::Acquire)
    }

    /// Every vCPU must park at its next loop top (the caller then kicks them).
    pub fn request_pause(&self) {
        self.pause.store(true, Ordering::Release);
    }

    /// Vcpu `v` alone parks at its next loop top; [`PauseControl::release`] lets it go.
    pub fn request_hold(&self, v: usize) {
        if let Some(h) = self.hold.get(v) {
            h.store(true, Ordering::Release);
        }
    }

    /// Whether vCPU `v` must park (the VM is paused, or `v` is held).
    pub fn must_park(&self, v: usize) -> bool {
        self.pause_requested() || self.hold.get(v).is_some_and(|h| h.load(Ordering::Acquire))
    }

    /// Ends the pause and every hold (the caller then kicks the vCPUs).
    pub fn release(&self) {
        self.pause.store(false, Ordering::Release);
        for h in &self.hold {
            h.store(false, Ordering::Release);
        }
    }

    /// Vcpu `v` saved `state` and waits: it counts as parked from now on.
    pub fn park(&self, v: usize, state: S) {
        *self.saved[v].lock() = Some(state);
        self.parked[v].store(true, Ordering::Release);
    }

    /// Vcpu `v` leaves its park: the state to continue from (`None` if nothing was saved).
    pub fn unpark(&self, v: usize) -> Option<S> {
        let s = self.saved[v].lock().take();
        self.parked[v].store(false, Ordering::Release);
        s
    }

    pub fn is_parked(&self, v: usize) -> bool {
        self.parked
            .get(v)
            .is_some_and(|p| p.load(Ordering::Acquire))
    }

    /// The first vCPU other than `except` (the caller's own) that is neither parked nor off,
    /// if any: the pause is complete when there is none.
    pub fn first_running(
        &self,
        except: Option<usize>,
        is_off: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        (0..self.parked.len()).find(|&v| Some(v) != except && !self.is_parked(v) && !is_off(v))
    }

    /// A parked vCPU's saved state (for a snapshot).
    pub fn saved(&self, v: usize) -> Option<S> {
        self.saved.get(v)?.lock().clone()
    }

    /// Reads a parked vCPU's saved state without copying it.
    pub fn with_saved<R>(&self, v: usize, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.saved.get(v)?.lock().as_ref().map(f)
    }

    /// Vcpu `v` starts from `state` (a restore).
    pub fn set_restore(&self, v: usize, state: S) {
        if let Some(slot) = self.restore.get(v) {
            *slot.lock() = Some(state);
        }
    }

    /// The state vCPU `v` of a restored VM starts from, once.
    pub fn take_restore(&self, v: usize) -> Option<S> {
        self.restore.get(v)?.lock().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_parks_every_vcpu_and_completes_when_all_are_parked_or_off() {
        let c: PauseControl<u64> = PauseControl::new(3);
        assert!((0..3).all(|v| !c.must_park(v)));
        c.request_pause();
        assert!((0..3).all(|v| c.must_park(v)));
        let off = |v: usize| v == 2;
        assert_eq!(c.first_running(None, off), Some(0));
        c.park(0, 100);
        assert_eq!(c.first_running(None, off), Some(1));
        // The caller's own vCPU is not waited for.
        assert_eq!(c.first_running(Some(1), off), None);
        c.park(1, 101);
        assert_eq!(c.first_running(None, off), None, "vCPU 2 is off");
        assert_eq!((c.saved(0), c.saved(1)), (Some(100), Some(101)));
        assert_eq!(c.with_saved(1, |s| s + 1), Some(102));
        c.release();
        assert!(!c.must_park(0));
        assert_eq!(c.unpark(0), Some(100));
        assert!(!c.is_parked(0) && c.is_parked(1));
    }

    #[test]
    fn a_hold_parks_one_vcpu_and_release_ends_it() {
        let c: PauseControl<u64> = PauseControl::new(2);
        c.request_hold(1);
        assert!(!c.must_park(0) && c.must_park(1));
        c.request_hold(7); // no such vCPU: ignored
        c.release();
        assert!(!c.must_park(1));
    }

    #[test]
    fn a_parked_vcpu_continues_from_its_saved_state_once_and_a_restore_slot_is_taken_once() {
        let c: PauseControl<u64> = PauseControl::new(1);
        c.request_pause();
        c.park(0, 2);
        c.release();
        assert_eq!(c.unpark(0), Some(2));
        assert_eq!(c.unpark(0), None, "taken once");
        c.set_restore(0, 9);
        assert_eq!(c.take_restore(0), Some(9));
        assert_eq!(c.take_restore(0), None);
        assert_eq!(c.saved(5), None);
    }
}
