//! Dirty logging for the monitor: harvests (checked against stage 2 on request), the
//! `hyp.dirty-log=` file, and the `dirty` command.

use super::*;

/// Harvests `t`'s dirty log for the monitor; with `check`, walks its stage-2 tables
/// afterwards and stops the machine if a writable entry maps a page whose dirty bit is clear.
/// The pages go to `log` if given.
pub(super) fn harvest(t: &Guest, check: bool, log: Option<&mut DirtyLogFile>) -> Option<u64> {
    let mut bits = alloc::vec![0u64; dirty_users::words(t)];
    let start = guest_counter(t);
    let harvested = t.dirty.lock().harvest(t, User::Monitor, &mut bits);
    let end = guest_counter(t);
    match harvested {
        Ok(n) => {
            t.stats.count(Counter::Harvests);
            t.stats.add(Counter::DirtyHarvested, n);
            if check {
                // Panics (a hypervisor bug, reported as such) when an invariant is broken.
                t.mem.check_invariants(&frames().lock());
            }
            if let Some(log) = log {
                log.record(t, start, end, n, &bits);
            }
            Some(n)
        }
        Err(e) => {
            say(format_args!("{}: dirty harvest: {e}", t.name));
            None
        }
    }
}

pub(super) fn guest_counter(t: &Guest) -> u64 {
    counter().wrapping_sub(t.hw.cntvoff)
}

/// The `hyp.dirty-log=` file (format in `hyp_formats::dirty_log`).
pub(super) struct DirtyLogFile {
    pub(super) path: crate::monitor::path::HostPath,
    /// `None` until the first harvest opens it (the VM's RAM is known then).
    pub(super) file: Option<HostFile>,
    /// A write failed (reported once): nothing more is logged.
    pub(super) failed: bool,
}

impl DirtyLogFile {
    fn record(&mut self, t: &Guest, start: u64, end: u64, count: u64, bits: &[u64]) {
        if self.failed {
            return;
        }
        let record = dirty_log::Record {
            start,
            end,
            count,
            bits,
        };
        let mut out = Vec::with_capacity(dirty_log::HEADER_LEN + record.encoded_len());
        if self.file.is_none() {
            let header = dirty_log::Header {
                first_gfn: t.ram.0 / PAGE_SIZE,
                pages: t.ram.1 / PAGE_SIZE,
                frequency: counter_frequency(),
            };
            out.extend_from_slice(&header.encode());
        }
        record.encode_into(&mut out);
        let written = match self.file.as_mut() {
            Some(f) => f.write_all(&out),
            None => HostFile::create(self.path.as_str()).and_then(|mut f| {
                let r = f.write_all(&out);
                self.file = Some(f);
                r
            }),
        };
        if let Err(e) = written {
            self.failed = true;
            log::error!("dirty log {}: {e}; no more harvests are logged", self.path);
        }
    }
}

pub(super) fn dirty(t: &Guest, op: DirtyOp) {
    match op {
        DirtyOp::Start => match t.dirty.lock().join(t, User::Monitor) {
            Ok(true) => log::info!("{}: dirty logging on", t.name),
            Ok(false) => say(format_args!("{}: dirty start: already logging", t.name)),
            Err(e) => say(format_args!("{}: dirty start: {e}", t.name)),
        },
        DirtyOp::Stop => match t.dirty.lock().leave(t, User::Monitor) {
            Ok(true) => log::info!("{}: dirty logging off", t.name),
            Ok(false) => say(format_args!("{}: dirty stop: not logging", t.name)),
            Err(e) => say(format_args!("{}: dirty stop: {e}", t.name)),
        },
        DirtyOp::Stats => {
            let logging = logging(t);
            let n = if logging {
                harvest(t, false, None)
            } else {
                None
            };
            let s = DirtyStats {
                logging,
                dirty_pages: n.unwrap_or(0),
                harvests: t.stats.get(Counter::Harvests),
                harvested_pages: t.stats.get(Counter::DirtyHarvested),
            };
            stats::dirty_stats(number(t), &s, &mut |a| say(a));
        }
    }
}

/// Whether the monitor is logging `t`'s dirty pages (snapshot tracking may log them too).
pub(super) fn logging(t: &Guest) -> bool {
    t.dirty.lock().is_user(User::Monitor)
}
