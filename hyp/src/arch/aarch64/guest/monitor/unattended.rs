//! The bootargs' unattended operations: timed actions, actions set off by a console text, the
//! migration storm and the periodic dirty harvests, advanced at pCPU 0's service points.

use super::*;

/// At most this many pages move per service point in a storm (the rest carry over).
pub(super) const STORM_STEP_MAX: u64 = 4096;

/// What the bootargs asked for, and the storm's and harvests' progress.
pub(super) struct Unattended {
    pub(super) schedule: Schedule,
    /// The storm has started (its start trigger came).
    pub(super) storm_on: bool,
    pub(super) storm_last_ms: u64,
    /// The periodic harvests have started.
    pub(super) harvest_on: bool,
    pub(super) harvest_last_ms: u64,
    pub(super) rng: Rng,
    pub(super) dirty_log: Option<DirtyLogFile>,
}

pub(super) static UNATTENDED: Once<Mutex<Unattended>> = Once::new();
/// Whether anything is scheduled at all (a cheap check on every exit of pCPU 0).
pub(super) static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// What a console text sets off.
pub(super) enum Fired {
    Action(Timed),
    StartStorm,
    StartHarvest,
}

/// Bootarg operations waiting for their VM's console to print a text, by VM index.
pub(super) static WATCH: Once<Mutex<ConsoleWatch<Fired>>> = Once::new();
/// Whether anything is watched (a cheap check on every byte a guest prints).
pub(super) static WATCHING: AtomicBool = AtomicBool::new(false);
/// Texts that came, for pCPU 0's next service point.
pub(super) static FIRED: Mutex<VecDeque<Fired>> = Mutex::new(VecDeque::new());
/// Whether FIRED may hold something: the service point, which runs at every exit of pCPU 0
/// while anything is scheduled, looks at this rather than taking the lock.
pub(super) static FIRED_ANY: AtomicBool = AtomicBool::new(false);
pub(super) static STORM_MOVED: AtomicU64 = AtomicU64::new(0);

/// The schedule's operations that wait for a console text, to watch for; those naming no VM
/// that exists are refused (logged).
pub(super) fn watch_consoles(
    guests: &[&'static Guest],
    schedule: &mut Schedule,
) -> ConsoleWatch<Fired> {
    let names: Vec<&str> = guests.iter().map(|g| g.name).collect();
    let mut watch = ConsoleWatch::new(guests.len());
    let mut add = |sel: &VmSelector, when: &Trigger, item: Fired, what: &dyn core::fmt::Display| {
        let Trigger::After(text) = when else {
            return;
        };
        let vm = match sel.resolve(&names) {
            Ok(n) if guests[n.index()].has_uart => n.index(),
            Ok(_) => {
                log::error!("bootargs: {what}: the VM has no console to watch; ignored");
                return;
            }
            Err(e) => {
                log::error!("bootargs: {what}: {e}; ignored");
                return;
            }
        };
        let _ = watch.watch(vm, text.clone(), item);
    };
    for t in schedule.take_watched() {
        let sel = t.command.vm().cloned().unwrap_or_default();
        let when = t.when.clone();
        let what = alloc::format!("{t}");
        add(&sel, &when, Fired::Action(t), &what);
    }
    if let Some(storm) = &schedule.migrate_storm {
        let what = alloc::format!("migration storm {}", storm.start);
        add(&storm.vm, &storm.start, Fired::StartStorm, &what);
    }
    if let Some(h) = &schedule.dirty_harvest {
        let what = alloc::format!("dirty harvest {}", h.start);
        add(&h.vm, &h.start, Fired::StartHarvest, &what);
    }
    watch
}

/// VM `index` printed `byte` on its console (any pCPU, under its devices lock): sets off the
/// bootarg operations waiting for a text that byte completes.
pub(in crate::arch::aarch64::guest) fn console_output(index: usize, byte: u8) {
    if !WATCHING.load(Ordering::Acquire) {
        return;
    }
    let Some(watch) = WATCH.get() else {
        return;
    };
    let mut fired = false;
    {
        let mut w = watch.lock();
        w.byte(index, byte, |item| {
            FIRED.lock().push_back(item);
            fired = true;
        });
        if w.is_empty() {
            WATCHING.store(false, Ordering::Release);
        }
    }
    if fired {
        FIRED_ANY.store(true, Ordering::Release);
        SCHEDULED.store(true, Ordering::Release);
        // pCPU 0 runs it, and may be asleep in a WFI wait with no timer armed.
        guest_irq::kick(0);
    }
}

/// VM 1's guest time in milliseconds (the clock the bootargs' times refer to).
pub(super) fn guest_ms() -> u64 {
    let Some(g) = GUESTS.get().and_then(|gs| gs.first()) else {
        return 0;
    };
    counter().saturating_sub(g.hw.cntvoff) / (counter_frequency() / 1000).max(1)
}

pub(super) fn unattended() {
    let Some(u) = UNATTENDED.get() else {
        return;
    };
    let now = guest_ms();
    let mut u = u.lock();
    if let Some(t) = u.schedule.take_due(now) {
        log::info!("bootargs: {t}");
        QUEUE.lock().push_back(t.command);
        PENDING.store(true, Ordering::Release);
    }
    let fired: Vec<Fired> = if FIRED_ANY.swap(false, Ordering::AcqRel) {
        FIRED.lock().drain(..).collect()
    } else {
        Vec::new()
    };
    for f in fired {
        match f {
            Fired::Action(t) => {
                log::info!("bootargs: {t}");
                QUEUE.lock().push_back(t.command);
                PENDING.store(true, Ordering::Release);
            }
            Fired::StartStorm => start_storm(&mut u, now),
            Fired::StartHarvest => start_harvest(&mut u, now),
        }
    }
    if !u.storm_on
        && let Some(Trigger::At(ms)) = u.schedule.migrate_storm.as_ref().map(|s| &s.start)
        && now >= *ms
    {
        start_storm(&mut u, now);
    }
    if !u.harvest_on
        && let Some(Trigger::At(ms)) = u.schedule.dirty_harvest.as_ref().map(|h| &h.start)
        && now >= *ms
    {
        start_harvest(&mut u, now);
    }
    if let Some(storm) = u.schedule.migrate_storm.clone().filter(|_| u.storm_on) {
        let due = now.saturating_sub(u.storm_last_ms) * u64::from(storm.pages_per_ms);
        if due > 0 {
            u.storm_last_ms = now;
            if let Some(t) = resolve(&storm.vm) {
                let r = control::migrate(t, due.min(STORM_STEP_MAX), &mut u.rng);
                STORM_MOVED.fetch_add(r.moved, Ordering::Relaxed);
            }
        }
    }
    if let Some(h) = u.schedule.dirty_harvest.clone().filter(|_| u.harvest_on)
        && now.saturating_sub(u.harvest_last_ms) >= h.every_ms
    {
        let check = u.schedule.dirty_check;
        if let Some(t) = resolve(&h.vm) {
            if !logging(t) {
                dirty(t, DirtyOp::Start);
            }
            harvest(t, check, u.dirty_log.as_mut());
        }
        // From the end of this harvest: the guest always runs `every_ms` between two, however
        // long a harvest (and its check) takes.
        u.harvest_last_ms = guest_ms();
    }
    SCHEDULED.store(
        !u.schedule.is_empty()
            || u.schedule.migrate_storm.is_some()
            || u.schedule.dirty_harvest.is_some()
            || WATCHING.load(Ordering::Acquire)
            || FIRED_ANY.load(Ordering::Acquire),
        Ordering::Release,
    );
}

pub(super) fn start_storm(u: &mut Unattended, now: u64) {
    if let Some(s) = &u.schedule.migrate_storm {
        log::info!(
            "bootargs: migration storm of {} pages/ms starts",
            s.pages_per_ms
        );
        u.storm_on = true;
        u.storm_last_ms = now;
    }
}

/// The first harvest (which turns the log on) is due at once.
pub(super) fn start_harvest(u: &mut Unattended, now: u64) {
    if let Some(h) = &u.schedule.dirty_harvest {
        log::info!("bootargs: dirty harvests every {} ms start", h.every_ms);
        u.harvest_on = true;
        u.harvest_last_ms = now.saturating_sub(h.every_ms);
    }
}

/// Before pCPU 0 sleeps in a WFI wait: wakes it (EL2 timer) when the schedule next needs it,
/// so timed actions, storms and harvests advance while the guest idles.
pub(in crate::arch::aarch64::guest) fn arm_wakeup() {
    if crate::arch::aarch64::percpu::cpu_index() != 0 || !SCHEDULED.load(Ordering::Acquire) {
        return;
    }
    let Some(u) = UNATTENDED.get() else {
        return;
    };
    let u = u.lock();
    let now = guest_ms();
    let mut next = u.schedule.next_due_ms();
    let mut due = |at: u64| next = Some(next.map_or(at, |n| n.min(at)));
    if let Some(s) = &u.schedule.migrate_storm {
        match (&s.start, u.storm_on) {
            (_, true) => due(now + 1),
            (Trigger::At(ms), false) => due(*ms),
            (Trigger::After(_), false) => {}
        }
    }
    if let Some(h) = &u.schedule.dirty_harvest {
        match (&h.start, u.harvest_on) {
            (_, true) => due(u.harvest_last_ms + h.every_ms),
            (Trigger::At(ms), false) => due(*ms),
            (Trigger::After(_), false) => {}
        }
    }
    if let (Some(at), Some(g)) = (next, GUESTS.get().and_then(|gs| gs.first())) {
        let ticks_per_ms = (counter_frequency() / 1000).max(1);
        crate::arch::aarch64::timer::hyp_arm_by(g.hw.cntvoff + at.max(now) * ticks_per_ms);
    }
}

/// Pages the storm moved (reported when the VM powers off).
pub(in crate::arch::aarch64::guest) fn storm_moved() -> Option<u64> {
    let u = UNATTENDED.get()?.lock();
    u.schedule
        .migrate_storm
        .as_ref()
        .map(|_| STORM_MOVED.load(Ordering::Relaxed))
}
