//! Physical interrupts while guests run: GIC set-up for the run loop, draining what a pCPU
//! took as a guest exit (or woke from WFI for), kicking another pCPU's vCPU, and console input.
//!
//! Every pCPU enables three interrupts at its redistributor: the kick SGI (another pCPU made
//! an interrupt pending for this pCPU's vCPU, or stopped its VM), the GIC maintenance
//! interrupt (list registers emptied while more interrupts wait) and the virtual timer's PPI.
//! The first two only need the exit they cause: the run loop re-flushes the list registers
//! before the next entry. The virtual timer is forwarded through a hardware-linked list
//! register, so it gets a priority drop here but no deactivation: it stays active at the
//! physical GIC until the guest deactivates its virtual copy, which deactivates the physical
//! one. The console's receive interrupt is routed to the boot pCPU; its bytes wait in a ring
//! until the console guest's virtual UART has room.

use super::console;
use super::gic::{self, Distributor, Redistributor};
use super::layout::MAX_CPUS;
use super::percpu;
use crate::platform::{Gic, Machine};
use crate::sync::Mutex;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Once;

/// The SGI one pCPU sends another to make its vCPU exit (or leave a WFI wait).
pub const KICK_SGI: u8 = 0;
/// The GICv3 maintenance interrupt (PPI 9).
const MAINTENANCE_INTID: u32 = 25;
/// Bytes typed ahead of the guest reading them; beyond this they are counted and dropped.
const INPUT_RING: usize = 4096;

struct Setup {
    gic: Gic,
    vtimer: u32,
    /// The EL2 physical timer's PPI: the hypervisor's own wake-ups (see `guest::monitor`).
    hyp_timer: u32,
    uart: Option<u32>,
}

static SETUP: Once<Setup> = Once::new();
static CPU_READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The virtual timer's physical interrupt was acknowledged on this pCPU and is left active for
/// the guest's deactivation through the hardware-linked list register.
static VTIMER_HELD: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Sets up the distributor (boot pCPU, before any vCPU runs). With `console_input`, the
/// console's receive interrupt is turned on and routed to this pCPU.
pub fn init(machine: &Machine<'_>, console_input: bool) {
    let boot_mpidr = percpu::get(0).mpidr.load(Ordering::Relaxed);
    let setup = SETUP.call_once(|| Setup {
        gic: machine.gic.clone(),
        vtimer: machine.timer.virt,
        hyp_timer: machine.timer.hyp_phys,
        uart: machine.uart_intid.filter(|_| console_input),
    });
    let dist = Distributor::new(&setup.gic);
    dist.init(boot_mpidr);
    if let Some(uart) = setup.uart {
        dist.route(uart, boot_mpidr);
        dist.set_enabled(uart, true);
        console::enable_input();
        // Bytes typed before now (piped in at QEMU's start) sit in the UART with their
        // interrupt just cleared, and the UART takes no more until they are read: move them
        // to the ring, where the monitor finds them once the VMs exist.
        read_console();
    } else if console_input {
        log::warn!("the console's DTB node names no SPI: guests get no console input");
    }
}

/// The physical INTID of the virtual timer (linked to the guest's virtual PPI 27).
pub fn vtimer_intid() -> u32 {
    SETUP.get().map_or(27, |s| s.vtimer)
}

/// This pCPU's redistributor and CPU interface, once; then, for a vCPU starting here, a clean
/// virtual-timer line (a vCPU that stopped with its timer interrupt active left it active).
pub fn vcpu_starting(cpu: usize) {
    let Some(setup) = SETUP.get() else {
        return;
    };
    let mpidr = percpu::get(cpu).mpidr.load(Ordering::Relaxed);
    let Some(rd) = Redistributor::find(&setup.gic, mpidr) else {
        log::error!(
            "cpu {cpu}: no redistributor for MPIDR {mpidr:#x}: guest interrupts will not arrive"
        );
        return;
    };
    if !CPU_READY[cpu].swap(true, Ordering::AcqRel) {
        rd.init();
        gic::cpu_interface_init();
        for intid in [
            u32::from(KICK_SGI),
            MAINTENANCE_INTID,
            setup.vtimer,
            setup.hyp_timer,
        ] {
            rd.set_enabled(intid, true);
        }
    }
    rd.clear_active(setup.vtimer);
    VTIMER_HELD[cpu].store(false, Ordering::Relaxed);
}

/// Deactivates the virtual timer's physical interrupt on this pCPU: its virtual copy is
/// neither pending nor active any more, so no guest deactivation will reach it (the guest
/// masked or cleared it at the vGIC), and left active it would never fire again here.
pub fn release_vtimer(cpu: usize) {
    VTIMER_HELD[cpu].store(false, Ordering::Relaxed);
    let Some(setup) = SETUP.get() else {
        return;
    };
    let mpidr = percpu::get(cpu).mpidr.load(Ordering::Relaxed);
    if let Some(rd) = Redistributor::find(&setup.gic, mpidr) {
        rd.clear_active(setup.vtimer);
    }
}

/// Whether the virtual timer's physical interrupt is held active on pCPU `cpu`.
pub fn vtimer_held(cpu: usize) -> bool {
    VTIMER_HELD[cpu].load(Ordering::Relaxed)
}

/// What the physical interrupts drained from this pCPU mean for its vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// The virtual timer fired: make the vCPU's virtual PPI pending.
    pub vtimer: bool,
    /// Console input arrived (see [`take_input`]).
    pub console: bool,
    /// The EL2 physical timer fired: a deadline (the vCPU's emulated physical timer, a
    /// monitor wake-up) may have come.
    pub hyp_timer: bool,
}

/// Acknowledges every interrupt pending at this pCPU.
pub fn drain() -> Drained {
    let mut d = Drained::default();
    let Some(setup) = SETUP.get() else {
        return d;
    };
    loop {
        let intid = gic::ack();
        if intid >= 1020 {
            return d;
        }
        gic::eoi(intid);
        if intid == setup.vtimer {
            // Deactivated by the guest, through the hardware-linked list register.
            VTIMER_HELD[percpu::cpu_index()].store(true, Ordering::Relaxed);
            d.vtimer = true;
            continue;
        }
        if intid == setup.hyp_timer {
            // A wake-up the caller asked for: the timer has done its job.
            super::timer::hyp_disarm();
            d.hyp_timer = true;
        }
        if Some(intid) == setup.uart {
            read_console();
            d.console = true;
        }
        gic::deactivate(intid);
    }
}

/// Makes pCPU `cpu` exit its guest (or leave its WFI wait) and look at its vCPU's interrupts.
pub fn kick(cpu: usize) {
    if cpu == percpu::cpu_index() {
        return;
    }
    gic::send_sgi(percpu::get(cpu).mpidr.load(Ordering::Relaxed), KICK_SGI);
}

struct Ring {
    buf: [u8; INPUT_RING],
    head: usize,
    len: usize,
}

static INPUT: Mutex<Ring> = Mutex::new(Ring {
    buf: [0; INPUT_RING],
    head: 0,
    len: 0,
});
static INPUT_DROPPED: AtomicU64 = AtomicU64::new(0);

fn read_console() {
    let mut ring = INPUT.lock();
    while let Some(b) = console::read_input() {
        if ring.len == INPUT_RING {
            if INPUT_DROPPED.fetch_add(1, Ordering::Relaxed) == 0 {
                log::warn!("console input: the guest is not reading; dropping what is typed");
            }
            continue;
        }
        let tail = (ring.head + ring.len) % INPUT_RING;
        ring.buf[tail] = b;
        ring.len += 1;
    }
}

/// Hands typed bytes to `accept` in order until it refuses one (its FIFO is full); that byte
/// stays for the next call.
pub fn take_input(mut accept: impl FnMut(u8) -> bool) {
    let mut ring = INPUT.lock();
    while ring.len > 0 {
        let b = ring.buf[ring.head];
        if !accept(b) {
            return;
        }
        ring.head = (ring.head + 1) % INPUT_RING;
        ring.len -= 1;
    }
}
