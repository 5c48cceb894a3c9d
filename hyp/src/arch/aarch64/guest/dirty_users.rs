//! A VM's dirty log and its users (`vm::dirty_share`): the monitor (`dirty start|stop|stats`,
//! the bootargs' periodic harvests) and snapshot tracking (the pages written since the VM's
//! latest snapshot, which a diff snapshot or a live pre-copy saves).

use super::{Guest, frames};
use crate::arch::aarch64::stage2::HwFrameData;
use crate::mm::addr::PAGE_SIZE;
use crate::vm::dirty_share::DirtyShare;
use alloc::string::String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum User {
    Monitor,
    Snapshots,
}

/// What snapshot tracking's pages are relative to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tracked {
    /// The snapshot whose contents plus the pages written since are the VM's memory.
    pub id: u64,
    /// Where it was written, for messages.
    pub file: String,
}

pub(super) struct DirtyUsers {
    share: DirtyShare<2>,
    /// Set once a snapshot completed with tracking on; cleared when tracked pages were lost
    /// (a failed snapshot, a reset that gave memory back).
    pub tracked: Option<Tracked>,
}

/// The bitmap length for `t`'s RAM, in words.
pub(super) fn words(t: &Guest) -> usize {
    (t.ram.1 / PAGE_SIZE).div_ceil(64) as usize
}

fn text(e: impl core::fmt::Display) -> String {
    use alloc::string::ToString;
    e.to_string()
}

impl DirtyUsers {
    pub fn new(ram_bytes: u64) -> Self {
        Self {
            share: DirtyShare::new((ram_bytes / PAGE_SIZE).div_ceil(64) as usize),
            tracked: None,
        }
    }

    pub fn is_user(&self, u: User) -> bool {
        self.share.is_user(u as usize)
    }

    /// Makes `u` a user of `t`'s log. `Ok(false)` when it already was one.
    pub fn join(&mut self, t: &Guest, u: User) -> Result<bool, String> {
        self.share
            .join(u as usize, || {
                t.mem.enable_dirty_log(frames(), &mut HwFrameData, 0)
            })
            .map_err(text)
    }

    /// Ends `u`'s use of `t`'s log. `Ok(false)` when it was no user.
    pub fn leave(&mut self, t: &Guest, u: User) -> Result<bool, String> {
        if u == User::Snapshots {
            self.tracked = None;
        }
        self.share
            .leave(u as usize, || {
                t.mem.disable_dirty_log(frames(), &mut HwFrameData, 0)
            })
            .map_err(text)
    }

    /// ORs into `out` (a bit per page of RAM) every page written since `u`'s last harvest;
    /// returns how many. Each is write-protected again, so a later write is in the next.
    pub fn harvest(&mut self, t: &Guest, u: User, out: &mut [u64]) -> Result<u64, String> {
        self.share
            .harvest(u as usize, out, |fresh| t.mem.harvest_dirty_log(0, fresh))
            .map_err(text)?
            .ok_or_else(|| "dirty logging is off".into())
    }

    /// Forgets the pages written since `u`'s last harvest (a full snapshot starts anew).
    pub fn discard(&mut self, t: &Guest, u: User) -> Result<(), String> {
        let mut sink = alloc::vec![0u64; words(t)];
        self.harvest(t, u, &mut sink).map(|_| ())
    }
}
