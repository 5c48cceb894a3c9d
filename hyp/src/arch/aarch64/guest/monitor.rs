//! The hypervisor monitor at EL2: console input routed between the guests and the monitor
//! (`monitor::MonitorInput`), and the executor that carries out monitor commands and the
//! operations the bootargs schedule (`monitor::bootargs`).
//!
//! Everything runs on pCPU 0, where the console's receive interrupt is routed: typed bytes are
//! routed as they are read, so a guest that does not read its UART never holds up the monitor.
//! Commands queue and run at pCPU 0's next service point (a guest exit, a wake-up from WFI, or
//! its park loop while its VM is paused); a timed bootarg action runs when VM 1's guest time
//! reaches it, a migration storm and periodic dirty harvests advance at every service point.
//! A bootarg operation waiting for a console text is watched for on whichever pCPU the VM
//! prints from ([`console_output`]); once the text is out it is handed to pCPU 0, which is
//! kicked out of its WFI wait if it sleeps.

use super::control::{self, Rng};
use super::dirty_users::{self, User};
use super::{GUESTS, Guest, frames};
use crate::arch::aarch64::console;
use crate::arch::aarch64::guest_irq;
use crate::arch::aarch64::semihosting::HostFile;
use crate::arch::aarch64::sysreg::{counter, counter_frequency};
use crate::mm::addr::PAGE_SIZE;
use crate::mm::ownership::{FrameState, Owner};
use crate::monitor::PROMPT;
use crate::monitor::bootargs::{Schedule, Timed, schedule_from_bootargs};
use crate::monitor::command::{Command, DirtyOp, help};
use crate::monitor::select::{VmNumber, VmSelector};
use crate::monitor::session::{Action, MonitorInput};
use crate::monitor::stats::{self, DirtyStats, MemStats, RunState, VcpuRow, VcpuState, VmRow};
use crate::monitor::trigger::{ConsoleWatch, Trigger};
use crate::sync::Mutex;
use crate::vm::exit::Counter;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use hyp_formats::dirty_log;
use spin::Once;

/// At most this many pages move per service point in a storm (the rest carry over).
const STORM_STEP_MAX: u64 = 4096;

/// Console tag of the monitor's open line (guests use their VM number).
const MONITOR_TAG: usize = usize::MAX - 1;

static INPUT: Once<Mutex<MonitorInput>> = Once::new();
static QUEUE: Mutex<VecDeque<Command>> = Mutex::new(VecDeque::new());
static PENDING: AtomicBool = AtomicBool::new(false);

/// What the bootargs asked for, and the storm's and harvests' progress.
struct Unattended {
    schedule: Schedule,
    /// The storm has started (its start trigger came).
    storm_on: bool,
    storm_last_ms: u64,
    /// The periodic harvests have started.
    harvest_on: bool,
    harvest_last_ms: u64,
    rng: Rng,
    dirty_log: Option<DirtyLogFile>,
}

static UNATTENDED: Once<Mutex<Unattended>> = Once::new();
/// Whether anything is scheduled at all (a cheap check on every exit of pCPU 0).
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// What a console text sets off.
enum Fired {
    Action(Timed),
    StartStorm,
    StartHarvest,
}

/// Bootarg operations waiting for their VM's console to print a text, by VM index.
static WATCH: Once<Mutex<ConsoleWatch<Fired>>> = Once::new();
/// Whether anything is watched (a cheap check on every byte a guest prints).
static WATCHING: AtomicBool = AtomicBool::new(false);
/// Texts that came, for pCPU 0's next service point.
static FIRED: Mutex<VecDeque<Fired>> = Mutex::new(VecDeque::new());
/// Whether FIRED may hold something: the service point, which runs at every exit of pCPU 0
/// while anything is scheduled, looks at this rather than taking the lock.
static FIRED_ANY: AtomicBool = AtomicBool::new(false);
static STORM_MOVED: AtomicU64 = AtomicU64::new(0);

/// Sets up console routing (guest input to the first VM with a console) and the bootargs'
/// schedule. Call once the VMs exist.
pub(super) fn init(guests: &[&'static Guest], bootargs: &str) {
    let console = guests
        .iter()
        .position(|g| g.has_uart)
        .and_then(VmNumber::from_index);
    INPUT.call_once(|| Mutex::new(MonitorInput::new(console)));
    let (mut schedule, errors) = schedule_from_bootargs(bootargs);
    for e in &errors {
        log::error!("{e}");
    }
    let watch = watch_consoles(guests, &mut schedule);
    let watching = !watch.is_empty();
    WATCH.call_once(|| Mutex::new(watch));
    WATCHING.store(watching, Ordering::Release);
    let any = watching
        || !schedule.is_empty()
        || schedule.migrate_storm.is_some()
        || schedule.dirty_harvest.is_some();
    if any {
        log::info!(
            "bootargs: {} timed action(s){}{}{}",
            schedule.len(),
            schedule.migrate_storm.as_ref().map_or(
                alloc::string::String::new(),
                |s| alloc::format!(", migration storm of {} pages/ms", s.pages_per_ms)
            ),
            schedule.dirty_harvest.as_ref().map_or(
                alloc::string::String::new(),
                |h| alloc::format!(", dirty harvest every {} ms", h.every_ms)
            ),
            if schedule.dirty_check {
                ", dirty check on"
            } else {
                ""
            }
        );
    }
    let dirty_log = schedule.dirty_log.clone().map(|path| {
        if schedule.dirty_harvest.is_none() {
            log::warn!("hyp.dirty-log= without hyp.dirty-harvest=: nothing will be logged");
        }
        DirtyLogFile {
            path,
            file: None,
            failed: false,
        }
    });
    UNATTENDED.call_once(|| {
        Mutex::new(Unattended {
            dirty_log,
            schedule,
            storm_on: false,
            storm_last_ms: 0,
            harvest_on: false,
            harvest_last_ms: 0,
            rng: Rng::new(0x5eed_1234),
        })
    });
    SCHEDULED.store(any, Ordering::Release);
    // What was typed while the VMs were being created.
    console_input();
}

/// The schedule's operations that wait for a console text, to watch for; those naming no VM
/// that exists are refused (logged).
fn watch_consoles(guests: &[&'static Guest], schedule: &mut Schedule) -> ConsoleWatch<Fired> {
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
pub(super) fn console_output(index: usize, byte: u8) {
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

/// Prints the monitor's echo; a trailing newline closes its line (so the next output line
/// does not add a blank one).
fn echo(bytes: &[u8]) {
    let trimmed = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"));
    match trimmed {
        Some(line) => console::print_guest(MONITOR_TAG, "", line, true),
        None if !bytes.is_empty() => console::print_guest(MONITOR_TAG, "", bytes, false),
        None => {}
    }
}

fn prompt() {
    echo(PROMPT.as_bytes());
}

fn say(args: core::fmt::Arguments<'_>) {
    console::print_line(args);
}

/// Routes bytes typed on the console (pCPU 0, from its receive interrupt).
pub(super) fn console_input() {
    // Typed before the VMs exist (e.g. piped in at QEMU's start): kept in the ring until
    // `init` routes them, not dropped.
    let Some(input) = INPUT.get() else {
        return;
    };
    let mut kick: Option<&'static Guest> = None;
    guest_irq::take_input(|b| {
        let mut m = input.lock();
        let step = m.feed(b);
        echo(step.echo);
        match step.action {
            Action::Nothing => {}
            Action::Guest { vm, byte } => {
                if let Some(g) = guest(vm) {
                    let mut q = g.input.lock();
                    if !q.push(byte) && q.dropped() == 1 {
                        log::warn!(
                            "{}: console input: the guest is not reading; dropping what is typed",
                            g.name
                        );
                    }
                    kick = Some(g);
                }
            }
            Action::EnteredMonitor | Action::LeftMonitor(_) => {}
            Action::Run(command) => {
                QUEUE.lock().push_back(command);
                PENDING.store(true, Ordering::Release);
            }
            Action::Usage(e) => {
                say(format_args!("{e}"));
                prompt();
            }
            Action::Say(s) => {
                say(format_args!("{s}"));
                prompt();
            }
            Action::Prompt => prompt(),
        }
        true
    });
    if let Some(g) = kick {
        super::console_input_for(g);
    }
}

fn guest(vm: VmNumber) -> Option<&'static Guest> {
    GUESTS.get()?.get(vm.index()).copied()
}

fn names() -> Vec<&'static str> {
    GUESTS
        .get()
        .map(|gs| gs.iter().map(|g| g.name).collect())
        .unwrap_or_default()
}

fn resolve(sel: &VmSelector) -> Option<&'static Guest> {
    match sel.resolve(&names()) {
        Ok(n) => guest(n),
        Err(e) => {
            say(format_args!("{e}"));
            None
        }
    }
}

/// VM 1's guest time in milliseconds (the clock the bootargs' times refer to).
fn guest_ms() -> u64 {
    let Some(g) = GUESTS.get().and_then(|gs| gs.first()) else {
        return 0;
    };
    counter().saturating_sub(g.hw.cntvoff) / (counter_frequency() / 1000).max(1)
}

/// pCPU 0's service point. `g`/`v`: the VM and vCPU this pCPU runs.
pub(super) fn service(g: &'static Guest, v: usize) {
    if super::super::percpu::cpu_index() != 0 {
        return;
    }
    if SCHEDULED.load(Ordering::Acquire) {
        unattended();
    }
    if PENDING.load(Ordering::Acquire) {
        let Some(command) = QUEUE.lock().front().cloned() else {
            PENDING.store(false, Ordering::Release);
            return;
        };
        if run(&command, g, v) {
            let mut q = QUEUE.lock();
            q.pop_front();
            PENDING.store(!q.is_empty(), Ordering::Release);
            drop(q);
            prompt_if_monitor();
        }
    }
}

fn prompt_if_monitor() {
    if let Some(input) = INPUT.get()
        && input.lock().router().focus() == crate::monitor::router::Focus::Monitor
    {
        prompt();
    }
}

fn unattended() {
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

fn start_storm(u: &mut Unattended, now: u64) {
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
fn start_harvest(u: &mut Unattended, now: u64) {
    if let Some(h) = &u.schedule.dirty_harvest {
        log::info!("bootargs: dirty harvests every {} ms start", h.every_ms);
        u.harvest_on = true;
        u.harvest_last_ms = now.saturating_sub(h.every_ms);
    }
}

/// Before pCPU 0 sleeps in a WFI wait: wakes it (EL2 timer) when the schedule next needs it,
/// so timed actions, storms and harvests advance while the guest idles.
pub(super) fn arm_wakeup() {
    if super::super::percpu::cpu_index() != 0 || !SCHEDULED.load(Ordering::Acquire) {
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
pub(super) fn storm_moved() -> Option<u64> {
    let u = UNATTENDED.get()?.lock();
    u.schedule
        .migrate_storm
        .as_ref()
        .map(|_| STORM_MOVED.load(Ordering::Relaxed))
}

/// Harvests `t`'s dirty log for the monitor; with `check`, walks its stage-2 tables
/// afterwards and stops the machine if a writable entry maps a page whose dirty bit is clear.
/// The pages go to `log` if given.
fn harvest(t: &Guest, check: bool, log: Option<&mut DirtyLogFile>) -> Option<u64> {
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

fn guest_counter(t: &Guest) -> u64 {
    counter().wrapping_sub(t.hw.cntvoff)
}

/// The `hyp.dirty-log=` file (format in `hyp_formats::dirty_log`).
struct DirtyLogFile {
    path: crate::monitor::path::HostPath,
    /// `None` until the first harvest opens it (the VM's RAM is known then).
    file: Option<HostFile>,
    /// A write failed (reported once): nothing more is logged.
    failed: bool,
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

fn dirty(t: &Guest, op: DirtyOp) {
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
fn logging(t: &Guest) -> bool {
    t.dirty.lock().is_user(User::Monitor)
}

fn number(t: &Guest) -> VmNumber {
    let i = GUESTS
        .get()
        .and_then(|gs| gs.iter().position(|g| core::ptr::eq(*g, t)))
        .unwrap_or(0);
    VmNumber::from_index(i).expect("VM indices fit")
}

/// Carries out `command` on pCPU 0, which runs vCPU `v` of `g`. Returns false when it must
/// wait (a pause needs this vCPU parked first: it parks at its next loop top).
fn run(command: &Command, g: &'static Guest, v: usize) -> bool {
    match command {
        Command::Help(None) => help(&mut |a| say(a)),
        Command::Help(Some(spec)) => say(format_args!("{spec}")),
        Command::Vms => {
            let gs = GUESTS.get().map(Vec::as_slice).unwrap_or(&[]);
            let console_vm = INPUT.get().and_then(|i| i.lock().router().console_vm());
            let rows: Vec<VmRow<'_>> = gs
                .iter()
                .enumerate()
                .map(|(i, t)| VmRow {
                    number: VmNumber::from_index(i).expect("VM indices fit"),
                    name: t.name,
                    vcpus: t.power.vcpus(),
                    memory: t.ram.1,
                    state: run_state(t),
                    console: console_vm.is_some_and(|n| n.index() == i),
                })
                .collect();
            stats::vms(&rows, &mut |a| say(a));
        }
        Command::Vcpus(sel) => {
            let Some(t) = resolve(sel) else { return true };
            let rows: Vec<VcpuRow> = (0..t.power.vcpus())
                .map(|i| VcpuRow {
                    index: i,
                    pcpu: Some(t.first_pcpu + i),
                    state: if t.power.is_off(i) {
                        VcpuState::Off
                    } else if control::is_parked(t, i) {
                        VcpuState::Paused
                    } else {
                        VcpuState::Running
                    },
                    pc: control::saved_pc(t, i).unwrap_or(0),
                    exits: if i == 0 { t.stats.total() } else { 0 },
                })
                .collect();
            stats::vcpus(number(t), t.name, &rows, &mut |a| say(a));
        }
        Command::Stats(sel) => {
            let Some(t) = resolve(sel) else { return true };
            let exits: Vec<(&str, u64)> = Counter::ALL
                .iter()
                .filter(|c| c.is_exit())
                .map(|&c| (c.name(), t.stats.get(c)))
                .filter(|&(_, n)| n != 0)
                .collect();
            let s = stats::VmStats {
                exits: &exits,
                stage2_faults: t.stats.get(Counter::Stage2Mapped)
                    + t.stats.get(Counter::Stage2Retry),
                tlb_invalidations: crate::arch::aarch64::stage2::tlb_invalidations(),
                dirty_pages: logging(t).then(|| t.stats.get(Counter::DirtyHarvested)),
            };
            stats::vm_stats(number(t), t.name, &s, &mut |a| say(a));
            say(format_args!(
                "migrated pages {}, resets {}",
                t.stats.get(Counter::Migrated),
                t.stats.get(Counter::Reset)
            ));
        }
        Command::Mem => {
            let f = frames().lock();
            let (mut free, mut hyp, mut guest, mut shared) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..f.frames() {
                match f.state(crate::mm::addr::Pfn::new(f.base().raw() + i)) {
                    Some(FrameState::Free) => free += 1,
                    Some(FrameState::Owned(Owner::Hyp)) => hyp += 1,
                    Some(FrameState::Owned(Owner::Vm(_))) => guest += 1,
                    Some(_) => shared += 1,
                    None => {}
                }
            }
            drop(f);
            let tables: usize = GUESTS
                .get()
                .map_or(0, |gs| gs.iter().map(|t| t.mem.table_pages()).sum());
            let rows = [
                ("free", free),
                ("hypervisor", hyp),
                ("guest", guest),
                ("shared", shared),
            ];
            stats::mem(
                &MemStats {
                    frames: &rows,
                    frame_size: PAGE_SIZE,
                    table_pages: tables as u64,
                },
                &mut |a| say(a),
            );
        }
        Command::Dirty { op, vm } => {
            if let Some(t) = resolve(vm) {
                dirty(t, *op);
            }
        }
        Command::Pause(sel) => {
            let Some(t) = resolve(sel) else { return true };
            let me = core::ptr::eq(t, g).then_some(v);
            if me.is_some() && !control::is_parked(g, v) {
                g.control.request_pause();
                return false;
            }
            match control::pause(t, me) {
                Ok(()) => say(format_args!("{}: paused", t.name)),
                Err(e) => say(format_args!("{}: pause: {e}", t.name)),
            }
        }
        Command::Resume(sel) => {
            let Some(t) = resolve(sel) else { return true };
            control::resume(t);
            say(format_args!("{}: resumed", t.name));
        }
        Command::Snapshot(req) => {
            let Some(t) = resolve(&req.vm) else {
                return true;
            };
            let me = core::ptr::eq(t, g).then_some(v);
            if me.is_some() && !control::is_parked(g, v) {
                // This pCPU's vCPU must be parked (its state saved) before the snapshot: the
                // whole VM for a coherent one, only itself for a live one's pre-copy.
                if req.live {
                    g.control.request_hold(v);
                } else {
                    g.control.request_pause();
                }
                return false;
            }
            super::snapshot::take(t, me, req);
        }
        Command::Migrate { pages, vm } => {
            let Some(t) = resolve(vm) else { return true };
            let mut rng = Rng::new(counter());
            let r = control::migrate(t, u64::from(*pages), &mut rng);
            say(format_args!(
                "{}: migrate: {} pages moved ({} picked had no frame yet, {} refused)",
                t.name, r.moved, r.unbacked, r.refused
            ));
        }
        Command::Log(level) => {
            log::set_max_level(*level);
            say(format_args!("log level {level}"));
        }
        Command::Console(sel) => {
            let Some(t) = resolve(sel) else { return true };
            if !t.has_uart {
                say(format_args!("{} has no console", t.name));
            } else if let Some(input) = INPUT.get() {
                input.lock().router_mut().set_console_vm(number(t));
                say(format_args!("guest input goes to {}", t.name));
            }
        }
        Command::Exit => {}
    }
    true
}

fn run_state(t: &Guest) -> RunState {
    if !t.running.load(Ordering::Acquire) {
        RunState::Off
    } else if t.control.pause_requested() {
        RunState::Paused
    } else {
        RunState::Running
    }
}
