//! One guest exit, decided portably: [`step`] takes the decoded exit of one vCPU and turns it
//! into changes of the vCPU's registers, calls into the VM (memory core, devices, power) and an
//! [`Action`] for the run loop. The run loop in `arch` only enters the guest, reads the
//! syndrome, calls [`step`] and applies the action.
//!
//! Two traits keep hardware and the VM's shared state out of here, so that host tests drive
//! every exit kind with fakes: [`VcpuHw`] is the vCPU on its pCPU (registers, EL1 exception
//! entry, virtual SError), [`VmEnv`] the VM it belongs to (counters, stage-2 faults, devices,
//! PSCI power state, kicks, logging).
#![forbid(unsafe_code)]

use core::fmt;

use crate::mm::addr::Ipa;
use crate::mm::fault::{Access, FaultError, FaultOutcome};
use crate::vdev::DeviceKind;
use crate::vdev::mmio::{DataAbort, MmioAccess, MmioError};
use crate::vdev::phys_timer::TimerReg;
use crate::vm::cpu_id::GuestIdRegs;
use crate::vm::exit::{self, Abort, Counter, ExitReason, SysReg};
use crate::vm::inject::{self, El1Entry, Injection};
use crate::vm::power::{StartRequest, VmPower};
use crate::vm::psci::{self, PsciAction, PsciError};

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// WFI: sleep until the vCPU has an interrupt to take (or must stop), then enter again.
    WaitForInterrupt,
    /// CPU_OFF: this vCPU stops; its pCPU waits for the next CPU_ON.
    StopVcpu,
    /// SYSTEM_OFF or a fatal VM error: the whole VM stops.
    StopVm,
    /// SYSTEM_RESET: every vCPU stops, the VM is rebuilt and vCPU 0 restarts.
    ResetVm,
}

/// The vCPU on its pCPU.
pub trait VcpuHw {
    /// General-purpose register `n` as an instruction names it; 31 is XZR (reads 0).
    fn gpr(&self, n: u8) -> u64;
    /// Writes register `n`; writes to 31 (XZR) are discarded.
    fn set_gpr(&mut self, n: u8, value: u64);
    /// Where the vCPU continues (ELR_EL2).
    fn pc(&self) -> u64;
    fn set_pc(&mut self, pc: u64);
    /// The PSTATE it continues with (SPSR_EL2).
    fn pstate(&self) -> u64;
    fn set_pstate(&mut self, pstate: u64);
    /// VBAR_EL1, for an exception the hypervisor makes the guest take.
    fn vbar_el1(&self) -> u64;
    /// Leaves ESR/FAR/ELR/SPSR_EL1 as the architecture's exception entry would (`entry.pc`
    /// and `entry.pstate` are set through [`VcpuHw::set_pc`]/[`VcpuHw::set_pstate`]).
    fn set_el1_exception(&mut self, entry: &El1Entry);
    /// Makes a virtual SError pending (taken once the guest unmasks SErrors).
    fn pend_virtual_serror(&mut self);
}

/// How loud a message is; the VM decides where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Messages logged at most once per VM (each says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Once {
    /// An abort injected for an address with nothing the hypervisor resolves.
    AbortInjected = 0,
    /// UNDEFINED injected (an unknown class or an unemulated register).
    UndefInjected = 1,
    /// An SError taken while the guest ran.
    SError = 2,
    /// An abort injected for the VM's own populated RAM (a hypervisor bug).
    AbortOnRam = 3,
}

/// The VM a vCPU belongs to, as the exit handler needs it.
pub trait VmEnv {
    fn name(&self) -> &str;
    fn count(&self, c: Counter);
    fn power(&self) -> &VmPower;
    /// Wakes pCPUs waiting for a vCPU start request (after [`VmPower::request_start`]).
    fn wake_starters(&self);
    fn id_regs(&self) -> &GuestIdRegs;
    /// The guest wrote ICC_SGI1R_EL1: make the SGI pending and kick its other targets.
    fn send_sgi(&self, v: usize, value: u64);
    /// A trapped access to vCPU `v`'s EL1 physical timer register: `Some(value)` writes it;
    /// returns what a read gives.
    fn ptimer_access(&self, v: usize, reg: TimerReg, write: Option<u64>) -> u64;
    /// Whether `ipa` is in the VM's RAM.
    fn is_guest_memory(&self, ipa: Ipa) -> bool;
    /// Whether the RAM page at `ipa` has a frame.
    fn is_backed(&self, ipa: Ipa) -> bool;
    /// Whether the VM was restored from a snapshot (it has no boot images).
    fn restored(&self) -> bool;
    /// Resolves a stage-2 fault on the VM's RAM (first touch of a block backs all of it).
    fn stage2_fault(&self, ipa: Ipa, access: Access) -> Result<FaultOutcome, FaultError>;
    /// The emulated device window at `ipa`, and the offset in it.
    fn device_at(&self, ipa: Ipa) -> Option<(DeviceKind, u64)>;
    /// Vcpu `v`'s access to device `kind`: its result (`None`: no such device in this VM),
    /// and the vCPU to kick if an interrupt became deliverable to it.
    fn device_access(
        &self,
        v: usize,
        kind: DeviceKind,
        access: MmioAccess,
    ) -> (Option<Result<u64, MmioError>>, Option<usize>);
    /// Makes vCPU `v` leave the guest (or its WFI) to see what changed.
    fn kick(&self, v: usize);
    /// A physical IRQ made vCPU `v` exit: take what arrived on this pCPU (timers, console
    /// input, kicks) into the VM.
    fn take_physical_irqs(&self, v: usize);
    fn log(&self, level: Level, args: fmt::Arguments<'_>);
    /// Logs `args` the first time `which` happens in this VM.
    fn log_once(&self, which: Once, args: fmt::Arguments<'_>);
}

/// One exit of vCPU `v`: its decoded reason and, for aborts, FAR_EL2 and HPFAR_EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub reason: ExitReason,
    pub far: u64,
    pub hpfar: u64,
}

/// Handles one exit of vCPU `v`.
pub fn step(env: &impl VmEnv, cpu: &mut impl VcpuHw, v: usize, exit: Exit) -> Action {
    match exit.reason {
        ExitReason::Hvc { .. } => {
            env.count(Counter::Hvc);
            psci_call(env, cpu)
        }
        ExitReason::Smc { .. } => {
            env.count(Counter::Smc);
            // A trapped SMC returns to the instruction itself.
            cpu.set_pc(cpu.pc() + 4);
            psci_call(env, cpu)
        }
        ExitReason::Wfi => {
            env.count(Counter::Wfi);
            cpu.set_pc(cpu.pc() + 4);
            Action::WaitForInterrupt
        }
        ExitReason::Wfe => {
            env.count(Counter::Wfe);
            cpu.set_pc(cpu.pc() + 4);
            Action::Resume
        }
        ExitReason::SysReg(a) => {
            env.count(Counter::SysReg);
            sysreg(env, cpu, v, a);
            Action::Resume
        }
        ExitReason::Abort(a) => abort(env, cpu, v, a, exit.far, exit.hpfar),
        ExitReason::Irq => {
            env.count(Counter::Irq);
            env.take_physical_irqs(v);
            Action::Resume
        }
        ExitReason::Fiq => {
            env.count(Counter::Fiq);
            Action::Resume
        }
        ExitReason::SError { esr } => {
            env.count(Counter::SError);
            env.log_once(
                Once::SError,
                format_args!(
                    "{}: vCPU {v}: SError (ESR {esr:#x}) while the guest ran: virtual SError injected",
                    env.name()
                ),
            );
            // The error belongs to what the guest did (a write to a device that failed
            // later): it is the guest's to handle, as on hardware.
            cpu.pend_virtual_serror();
            Action::Resume
        }
        ExitReason::Other { ec } => {
            env.log_once(
                Once::UndefInjected,
                format_args!(
                    "{}: vCPU {v}: exception class {ec:#x} ({}) at {:#x}: UNDEFINED injected",
                    env.name(),
                    crate::esr::ec_name(ec),
                    cpu.pc()
                ),
            );
            inject_into(env, cpu, Injection::Undefined);
            Action::Resume
        }
    }
}

fn sysreg(env: &impl VmEnv, cpu: &mut impl VcpuHw, v: usize, a: exit::SysRegAccess) {
    if a.reg == SysReg::ICC_SGI1R_EL1 && !a.read {
        env.send_sgi(v, cpu.gpr(a.rt));
    } else if let Some(value) = env.id_regs().read(a.reg).filter(|_| a.read) {
        cpu.set_gpr(a.rt, value);
    } else if let Some(reg) = TimerReg::decode(a.reg).filter(|&r| a.read || r != TimerReg::Count) {
        let write = (!a.read).then(|| cpu.gpr(a.rt));
        let value = env.ptimer_access(v, reg, write);
        if a.read {
            cpu.set_gpr(a.rt, value);
        }
    } else {
        env.log_once(
            Once::UndefInjected,
            format_args!(
                "{}: vCPU {v}: {} of {} at {:#x} is not emulated: UNDEFINED injected",
                env.name(),
                if a.read { "MRS" } else { "MSR" },
                a.reg,
                cpu.pc()
            ),
        );
        inject_into(env, cpu, Injection::Undefined);
        return;
    }
    cpu.set_pc(cpu.pc() + 4);
}

fn psci_call(env: &impl VmEnv, cpu: &mut impl VcpuHw) -> Action {
    let args = [cpu.gpr(0), cpu.gpr(1), cpu.gpr(2), cpu.gpr(3)];
    let out = psci::handle(env.power(), args);
    cpu.set_gpr(0, out.x0);
    match out.action {
        PsciAction::None => Action::Resume,
        PsciAction::StartVcpu {
            vcpu,
            entry,
            context,
        } => {
            if env
                .power()
                .request_start(vcpu, StartRequest { entry, context })
            {
                env.wake_starters();
            } else {
                cpu.set_gpr(0, PsciError::AlreadyOn.to_x0());
            }
            Action::Resume
        }
        PsciAction::StopSelf => Action::StopVcpu,
        PsciAction::SystemOff => {
            env.log(Level::Info, format_args!("{}: PSCI SYSTEM_OFF", env.name()));
            Action::StopVm
        }
        PsciAction::SystemReset => {
            env.log(
                Level::Info,
                format_args!("{}: PSCI SYSTEM_RESET", env.name()),
            );
            Action::ResetVm
        }
    }
}

fn abort(
    env: &impl VmEnv,
    cpu: &mut impl VcpuHw,
    v: usize,
    a: Abort,
    far: u64,
    hpfar: u64,
) -> Action {
    let ipa = Ipa::new(exit::fault_ipa(hpfar, far));
    if a.is_stage2_fault() && env.is_guest_memory(ipa) {
        // A fault on the guest's own stage-1 table walk counts as a write: the walker may
        // update descriptors (hardware Access flag and dirty state) and need not say so in
        // WnR; mapped read-only (as a read fault is while dirty logging), the page tables
        // would fault again forever. KVM treats these faults the same way.
        let access = if a.write || a.s1ptw {
            Access::Write
        } else {
            Access::Read
        };
        return match env.stage2_fault(ipa, access) {
            Ok(FaultOutcome::Mapped { .. }) => {
                env.count(Counter::Stage2Mapped);
                Action::Resume
            }
            Ok(FaultOutcome::Retry) => {
                env.count(Counter::Stage2Retry);
                Action::Resume
            }
            Ok(other) => {
                unhandled_abort(env, cpu, v, a, far, ipa, format_args!("{other:?}"));
                Action::Resume
            }
            Err(e) => {
                env.log(
                    Level::Error,
                    format_args!("{}: vCPU {v}: {e}; stopping the VM", env.name()),
                );
                Action::StopVm
            }
        };
    }
    if a.data
        && a.is_stage2_fault()
        && let Some((kind, offset)) = env.device_at(ipa)
    {
        mmio(env, cpu, v, a, far, ipa, kind, offset);
        return Action::Resume;
    }
    if env.is_guest_memory(ipa) {
        let fsc = a.fsc;
        unhandled_abort(
            env,
            cpu,
            v,
            a,
            far,
            ipa,
            format_args!(
                "{} (FSC {fsc:#04x}) on guest RAM, not a fault the hypervisor resolves",
                crate::esr::fsc_name(fsc)
            ),
        );
    } else {
        unhandled_abort(
            env,
            cpu,
            v,
            a,
            far,
            ipa,
            format_args!("nothing is mapped there"),
        );
    }
    Action::Resume
}

#[allow(clippy::too_many_arguments)]
fn mmio(
    env: &impl VmEnv,
    cpu: &mut impl VcpuHw,
    v: usize,
    a: Abort,
    far: u64,
    ipa: Ipa,
    kind: DeviceKind,
    offset: u64,
) {
    let d = match DataAbort::decode(a.esr) {
        Ok(d) => d,
        Err(e) => {
            env.log(
                Level::Warn,
                format_args!(
                    "{}: vCPU {v}: access to emulated device at IPA {:#x} (PC {:#x}): {e}; abort injected",
                    env.name(),
                    ipa.raw(),
                    cpu.pc()
                ),
            );
            env.count(Counter::AbortInjected);
            inject_into(
                env,
                cpu,
                Injection::DataAbort {
                    far,
                    write: a.write,
                },
            );
            return;
        }
    };
    let access = d.access(offset, cpu.gpr(d.reg.index()));
    let (result, kick) = env.device_access(v, kind, access);
    if let Some(t) = kick.filter(|&t| t != v) {
        env.kick(t);
    }
    match result {
        Some(Ok(value)) => {
            env.count(Counter::Mmio);
            if let Some(r) = d.load_result(value) {
                cpu.set_gpr(d.reg.index(), r);
            }
            cpu.set_pc(cpu.pc() + 4);
        }
        Some(Err(e)) => unhandled_abort(env, cpu, v, a, far, ipa, format_args!("{e}")),
        None => unhandled_abort(
            env,
            cpu,
            v,
            a,
            far,
            ipa,
            format_args!("the VM has no such device"),
        ),
    }
}

fn unhandled_abort(
    env: &impl VmEnv,
    cpu: &mut impl VcpuHw,
    v: usize,
    a: Abort,
    far: u64,
    ipa: Ipa,
    why: fmt::Arguments<'_>,
) {
    env.count(Counter::AbortInjected);
    // The VM's own populated RAM must always be reachable: an abort for it (a restored page,
    // a migrated one) is a hypervisor bug, never the guest's.
    if env.is_guest_memory(ipa) && env.is_backed(ipa) {
        env.log_once(
            Once::AbortOnRam,
            format_args!(
                "{}: vCPU {v}: hypervisor bug: an abort is injected for IPA {:#x}, a populated page \
                 of the VM's own RAM{} (logged once per VM)",
                env.name(),
                ipa.raw(),
                if env.restored() {
                    ", restored from its snapshot"
                } else {
                    ""
                }
            ),
        );
    }
    env.log_once(
        Once::AbortInjected,
        format_args!(
            "{}: vCPU {v}: {} at VA {far:#x} (IPA {:#x}, PC {:#x}): {why}; external abort injected",
            env.name(),
            if a.data {
                if a.write {
                    "data abort, write"
                } else {
                    "data abort, read"
                }
            } else {
                "instruction abort, fetch"
            },
            ipa.raw(),
            cpu.pc()
        ),
    );
    let what = if a.data {
        Injection::DataAbort {
            far,
            write: a.write,
        }
    } else {
        Injection::InstructionAbort { far }
    };
    inject_into(env, cpu, what);
}

/// Makes the vCPU take `what` at EL1 on its next entry.
fn inject_into(env: &impl VmEnv, cpu: &mut impl VcpuHw, what: Injection) {
    if what == Injection::Undefined {
        env.count(Counter::UndefInjected);
    }
    let e = inject::take(what, cpu.pc(), cpu.pstate(), cpu.vbar_el1());
    cpu.set_el1_exception(&e);
    cpu.set_pc(e.pc);
    cpu.set_pstate(e.pstate);
}

#[cfg(test)]
mod tests;
