//! Deliberate bugs for the fuzzer's teeth tests: each flag breaks one rule of the memory core,
//! so a test can show that the fuzzer notices when that rule is broken.
//!
//! The flags live in a thread-local (each test thread runs its own fuzzer) so that every layer
//! (fault path, dirty log, ownership, stage 2) can consult them without the types carrying a
//! test-only field. Outside unit tests every [`bug!`] is `false`, except `skip_harvest_protect`
//! in a build with the `test-dirty-log-bug` feature, which the QEMU test
//! `linux/dirty-log-check-teeth` uses to show that the host-side dirty-log check catches a
//! hypervisor that loses writes.

#[cfg(test)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Bugs {
    /// Fault path: install the writable entry before setting the dirty bit.
    pub dirty_after_install: bool,
    /// Harvest: clear the dirty bits before write-protecting the pages.
    pub clear_before_protect: bool,
    /// Fault path: ignore the invalidate sequence and ranges in progress.
    pub skip_retry_check: bool,
    /// Notifier: do not remove stage-2 entries before the frames change hands.
    pub skip_invalidate_unmap: bool,
    /// Fault path: install writable entries for read faults while logging.
    pub writable_read_fault: bool,
    /// Harvest: hand out and clear the dirty bits without write-protecting the pages.
    pub skip_harvest_protect: bool,
    /// Fault install: map even when the table cache holds fewer frames than one fault may take
    /// (issue 12's first bug: a burst of lookups before any install stops the VM).
    pub no_table_reserve_retry: bool,
    /// Stage 2: link a new table without the publication barrier after its contents (issue
    /// 12's second bug).
    pub skip_publish_barrier: bool,
    /// Ownership: donate and share without checking who owns the frames.
    pub skip_owner_check: bool,
    /// Stage 2: hand unlinked table frames back before the TLB invalidation that covers them.
    pub free_tables_before_tlbi: bool,
    /// Stage 2: collapse a table of leaves with equal attributes into a block without checking
    /// that they map one contiguous, in-order run of frames.
    pub collapse_ignores_contiguity: bool,
    /// Stage 2: split a live block by storing the table over it (no break, no TLBI).
    pub split_without_break: bool,
    /// Stage 2: when more leaf invalidations are owed than the deferred list holds, drop the
    /// extra ones instead of falling back to a VMID-wide invalidation.
    pub deferred_overflow_dropped: bool,
    /// Stage 2: unmap stops one page short of the end of the range.
    pub unmap_one_page_short: bool,
}

#[cfg(test)]
std::thread_local! {
    static ON: core::cell::Cell<Bugs> = const { core::cell::Cell::new(Bugs {
        dirty_after_install: false,
        clear_before_protect: false,
        skip_retry_check: false,
        skip_invalidate_unmap: false,
        writable_read_fault: false,
        skip_harvest_protect: false,
        no_table_reserve_retry: false,
        skip_publish_barrier: false,
        skip_owner_check: false,
        free_tables_before_tlbi: false,
        collapse_ignores_contiguity: false,
        split_without_break: false,
        deferred_overflow_dropped: false,
        unmap_one_page_short: false,
    }) };
}

/// Switches this thread's deliberate bugs (all off by default).
#[cfg(test)]
pub(crate) fn set(bugs: Bugs) {
    ON.with(|b| b.set(bugs));
}

/// This thread's deliberate bugs.
#[cfg(test)]
pub(crate) fn current() -> Bugs {
    ON.with(core::cell::Cell::get)
}

/// Whether deliberate bug `$name` (a [`Bugs`] field) is on.
macro_rules! bug {
    ($name:ident) => {{
        #[cfg(test)]
        let on = $crate::mm::bugs::current().$name;
        #[cfg(not(test))]
        let on = cfg!(feature = "test-dirty-log-bug")
            && stringify!($name).as_bytes() == b"skip_harvest_protect";
        on
    }};
}
pub(crate) use bug;
