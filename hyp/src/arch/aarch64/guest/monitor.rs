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

mod dirty;
mod unattended;

use dirty::*;
use unattended::*;
pub(super) use unattended::{arm_wakeup, console_output, storm_moved};

/// Console tag of the monitor's open line (guests use their VM number).
const MONITOR_TAG: usize = usize::MAX - 1;

static INPUT: Once<Mutex<MonitorInput>> = Once::new();
static QUEUE: Mutex<VecDeque<Command>> = Mutex::new(VecDeque::new());
static PENDING: AtomicBool = AtomicBool::new(false);

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
