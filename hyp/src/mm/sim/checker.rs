//! Checks invariant I2 on every entry store: a valid entry's output address, size or memory
//! type changes only through an invalid entry and a completed TLB invalidation covering it.
//!
//! It attributes each store to a (VMID, IPA, level) slot by following table links as they are
//! written (roots are registered with the VM), and remembers every valid value removed from a
//! slot until a TLB invalidation covering it completes ("pending"). Storing a valid value that
//! would need BBM relative to the slot's current value, or to a pending one overlapping it, is a
//! violation: some CPU may still translate with the old value while the new one is live.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::mm::addr::{Ipa, Pa};
use crate::mm::descriptor::{ENTRIES_PER_TABLE, Entry, Level, Pte, needs_bbm};
use crate::mm::stage2::Vmid;

/// Where an entry store lands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Slot {
    pub vmid: Vmid,
    /// First IPA the entry translates.
    pub ipa: Ipa,
    pub level: Level,
}

/// A broken invariant seen by the sim.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Violation {
    /// I2: a live entry was overwritten by one needing BBM, without an invalid entry between.
    LiveChangeWithoutBreak { slot: Slot, old: Pte, new: Pte },
    /// I2: the entry went invalid but no completed TLBI covered it before the new value.
    ChangeWithoutTlbi {
        slot: Slot,
        stale: Pte,
        stale_level: Level,
        new: Pte,
    },
    /// I4: a frame was freed while a CPU still caches a translation into or through it.
    FreedWhileCached {
        frame: Pa,
        cpu: usize,
        vmid: Vmid,
        ipa: Ipa,
    },
    /// A table was linked (entry `index` of `parent` set to point at it) while stores into it
    /// were not yet ordered before the link by a barrier: another CPU's walker could follow the
    /// link and read the frame's old contents.
    LinkBeforePublish { table: Pa, parent: Pa, index: usize },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LiveChangeWithoutBreak { slot, old, new } => write!(
                f,
                "I2: live level-{} entry for VM {} IPA {} changed {old:?} -> {new:?} without \
                 break-before-make",
                slot.level, slot.vmid, slot.ipa
            ),
            Self::ChangeWithoutTlbi {
                slot,
                stale,
                stale_level,
                new,
            } => write!(
                f,
                "I2: level-{} entry for VM {} IPA {} set to {new:?} while level-{stale_level} \
                 {stale:?} may still be cached (no completed TLBI since it was removed)",
                slot.level, slot.vmid, slot.ipa
            ),
            Self::FreedWhileCached {
                frame,
                cpu,
                vmid,
                ipa,
            } => write!(
                f,
                "I4: frame {frame} freed while CPU {cpu} caches VM {vmid} IPA {ipa} through it"
            ),
            Self::LinkBeforePublish {
                table,
                parent,
                index,
            } => write!(
                f,
                "table {table} linked at entry {index} of {parent} before a barrier ordered \
                 the stores into it (a walker may see its old contents)"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    slot: Slot,
    old: Pte,
}

impl Pending {
    fn overlaps(&self, s: &Slot) -> bool {
        let (a0, a1) = (
            self.slot.ipa.raw(),
            self.slot.ipa.raw() + self.slot.level.entry_size(),
        );
        let (b0, b1) = (s.ipa.raw(), s.ipa.raw() + s.level.entry_size());
        self.slot.vmid == s.vmid && a0 < b1 && b0 < a1
    }
}

/// Table-link registry plus pending removals.
#[derive(Debug, Default)]
pub struct BbmChecker {
    /// Table frame -> the slot its entry 0 translates (VMID, IPA base, level of its entries).
    tables: BTreeMap<Pa, Slot>,
    pending: Vec<Pending>,
}

impl BbmChecker {
    /// Attribute stores into `root` (a table of entries at `level`) to `vmid`.
    pub fn register_root(&mut self, vmid: Vmid, root: Pa, level: Level) {
        self.tables.insert(
            root,
            Slot {
                vmid,
                ipa: Ipa::new(0),
                level,
            },
        );
    }

    /// Forget a VM's root (after its tables are destroyed).
    pub fn forget_root(&mut self, root: Pa) {
        self.tables.remove(&root);
    }

    /// The slot a store at (`table`, `index`) lands in, if the table is linked into a known tree.
    pub fn slot(&self, table: Pa, index: usize) -> Option<Slot> {
        self.tables.get(&table).map(|t| Slot {
            vmid: t.vmid,
            ipa: Ipa::new(t.ipa.raw() + ((index as u64) << t.level.shift())),
            level: t.level,
        })
    }

    /// A table frame is being (re)initialised: it belongs to no tree until linked.
    pub fn on_zero(&mut self, table: Pa) {
        self.tables.remove(&table);
    }

    /// Check and record the store `old -> new` at (`table`, `index`); `read` reads entries of
    /// other tables (to see the leaves a newly linked, pre-filled table brings in).
    pub fn on_store(
        &mut self,
        table: Pa,
        index: usize,
        old: Pte,
        new: Pte,
        read: &dyn Fn(Pa, usize) -> Pte,
    ) -> Option<Violation> {
        let slot = self.slot(table, index)?;
        let (old_e, new_e) = (old.decode(slot.level), new.decode(slot.level));
        // Follow table links so stores below are attributed too.
        if let Entry::Table(child) = old_e
            && new_e != old_e
        {
            self.tables.remove(&child);
        }
        if let Entry::Table(child) = new_e {
            let level = slot.level.next().expect("no tables at level 3");
            self.tables.insert(
                child,
                Slot {
                    vmid: slot.vmid,
                    ipa: slot.ipa,
                    level,
                },
            );
        }
        if old_e.is_valid() && new_e.is_valid() && needs_bbm(old_e, new_e) {
            return Some(Violation::LiveChangeWithoutBreak { slot, old, new });
        }
        if old_e.is_valid() && !new_e.is_valid() {
            self.pending.push(Pending { slot, old });
            return None;
        }
        match new_e {
            Entry::Leaf { .. } => self.check_pending(slot, new),
            // Linking a table makes the leaves already in it live at once.
            Entry::Table(child) if old_e != new_e => self.check_linked_table(slot, child, read),
            _ => None,
        }
    }

    fn check_pending(&self, slot: Slot, new: Pte) -> Option<Violation> {
        let new_e = new.decode(slot.level);
        self.pending
            .iter()
            .filter(|p| p.overlaps(&slot))
            .find_map(|p| {
                let stale = p.old.decode(p.slot.level);
                (p.slot.level != slot.level || needs_bbm(stale, new_e)).then_some(
                    Violation::ChangeWithoutTlbi {
                        slot,
                        stale: p.old,
                        stale_level: p.slot.level,
                        new,
                    },
                )
            })
    }

    fn check_linked_table(
        &self,
        slot: Slot,
        child: Pa,
        read: &dyn Fn(Pa, usize) -> Pte,
    ) -> Option<Violation> {
        if !self.pending.iter().any(|p| p.overlaps(&slot)) {
            return None;
        }
        let level = slot.level.next().expect("no tables at level 3");
        (0..ENTRIES_PER_TABLE).find_map(|i| {
            let sub = Slot {
                vmid: slot.vmid,
                ipa: Ipa::new(slot.ipa.raw() + ((i as u64) << level.shift())),
                level,
            };
            match read(child, i).decode(level) {
                Entry::Leaf { .. } => self.check_pending(sub, read(child, i)),
                Entry::Table(t) => self.check_linked_table(sub, t, read),
                Entry::Invalid(_) => None,
            }
        })
    }

    /// A completed `TLBI IPAS2E1IS` (+ `VMALLE1IS`) for `ipa`: leaf removals covering it are
    /// no longer cached anywhere. Table removals need the VMID-wide invalidation.
    pub fn on_invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        self.pending.retain(|p| {
            let covers = p.slot.vmid == vmid
                && ipa >= p.slot.ipa
                && ipa.raw() - p.slot.ipa.raw() < p.slot.level.entry_size();
            // Table removals need the VMID-wide invalidation.
            !covers || p.old.is_table(p.slot.level)
        });
    }

    /// A completed `TLBI VMALLS12E1IS`: nothing of `vmid` is cached anywhere.
    pub fn on_invalidate_vmid(&mut self, vmid: Vmid) {
        self.pending.retain(|p| p.slot.vmid != vmid);
    }

    /// Removed entries not yet covered by a completed invalidation.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
