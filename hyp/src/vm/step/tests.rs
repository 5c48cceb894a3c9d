//! `step` driven with a fake VM and a fake vCPU: one test or more per exit kind and per
//! action.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::*;
use crate::esr::ec;
use crate::mm::addr::Pa;
use crate::vdev::mmio::AccessSize;
use crate::vm::exit::{ExitKind, decode};

const RAM: (u64, u64) = (0x4000_0000, 0x1000_0000);
const UART: u64 = 0x0900_0000;

/// A VM with one 256 MiB RAM region, a UART window, and everything it is asked recorded.
struct FakeVm {
    power: VmPower,
    id_regs: GuestIdRegs,
    counts: RefCell<BTreeMap<usize, u64>>,
    backed: Vec<u64>,
    fault: Cell<Result<FaultOutcome, FaultError>>,
    faults: RefCell<Vec<(Ipa, Access)>>,
    device: Cell<Option<Result<u64, MmioError>>>,
    device_kick: Cell<Option<usize>>,
    accesses: RefCell<Vec<(usize, DeviceKind, MmioAccess)>>,
    sgis: RefCell<Vec<(usize, u64)>>,
    ptimer: RefCell<Vec<(usize, TimerReg, Option<u64>)>>,
    kicks: RefCell<Vec<usize>>,
    irqs_taken: Cell<u32>,
    woken: Cell<u32>,
    logs: RefCell<Vec<(String, String)>>,
    restored: bool,
}

impl FakeVm {
    fn new(vcpus: u64) -> Self {
        Self {
            power: VmPower::new(0..vcpus, RAM.0, RAM.1),
            id_regs: GuestIdRegs::new(|crm, op2| u64::from(crm) << 8 | u64::from(op2), 40),
            counts: RefCell::default(),
            backed: Vec::new(),
            fault: Cell::new(Ok(FaultOutcome::Mapped {
                pa: Pa::new(0x8000_0000),
                block: false,
                writable: true,
            })),
            faults: RefCell::default(),
            device: Cell::new(Some(Ok(0))),
            device_kick: Cell::new(None),
            accesses: RefCell::default(),
            sgis: RefCell::default(),
            ptimer: RefCell::default(),
            kicks: RefCell::default(),
            irqs_taken: Cell::new(0),
            woken: Cell::new(0),
            logs: RefCell::default(),
            restored: false,
        }
    }
    fn count_of(&self, c: Counter) -> u64 {
        self.counts
            .borrow()
            .get(&(c as usize))
            .copied()
            .unwrap_or(0)
    }
    fn logged(&self, what: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(what))
    }
}

impl VmEnv for FakeVm {
    fn name(&self) -> &str {
        "vm1"
    }
    fn count(&self, c: Counter) {
        *self.counts.borrow_mut().entry(c as usize).or_default() += 1;
    }
    fn power(&self) -> &VmPower {
        &self.power
    }
    fn wake_starters(&self) {
        self.woken.set(self.woken.get() + 1);
    }
    fn id_regs(&self) -> &GuestIdRegs {
        &self.id_regs
    }
    fn send_sgi(&self, v: usize, value: u64) {
        self.sgis.borrow_mut().push((v, value));
    }
    fn ptimer_access(&self, v: usize, reg: TimerReg, write: Option<u64>) -> u64 {
        self.ptimer.borrow_mut().push((v, reg, write));
        0x1234
    }
    fn is_guest_memory(&self, ipa: Ipa) -> bool {
        ipa.raw() >= RAM.0 && ipa.raw() - RAM.0 < RAM.1
    }
    fn is_backed(&self, ipa: Ipa) -> bool {
        self.backed.contains(&(ipa.raw() & !0xfff))
    }
    fn restored(&self) -> bool {
        self.restored
    }
    fn stage2_fault(&self, ipa: Ipa, access: Access) -> Result<FaultOutcome, FaultError> {
        self.faults.borrow_mut().push((ipa, access));
        self.fault.get()
    }
    fn device_at(&self, ipa: Ipa) -> Option<(DeviceKind, u64)> {
        let off = ipa.raw().checked_sub(UART)?;
        (off < 0x1000).then_some((DeviceKind::Uart, off))
    }
    fn device_access(
        &self,
        v: usize,
        kind: DeviceKind,
        access: MmioAccess,
    ) -> (Option<Result<u64, MmioError>>, Option<usize>) {
        self.accesses.borrow_mut().push((v, kind, access));
        (self.device.get(), self.device_kick.get())
    }
    fn kick(&self, v: usize) {
        self.kicks.borrow_mut().push(v);
    }
    fn take_physical_irqs(&self, _v: usize) {
        self.irqs_taken.set(self.irqs_taken.get() + 1);
    }
    fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        self.logs
            .borrow_mut()
            .push((alloc::format!("{level:?}"), args.to_string()));
    }
    fn log_once(&self, which: Once, args: fmt::Arguments<'_>) {
        let tag = alloc::format!("once {which:?}");
        if !self.logs.borrow().iter().any(|(t, _)| *t == tag) {
            self.logs.borrow_mut().push((tag, args.to_string()));
        }
    }
}

/// A vCPU at EL1h with its registers and the EL1 exception it was made to take.
#[derive(Default)]
struct FakeCpu {
    x: [u64; 31],
    pc: u64,
    pstate: u64,
    el1: Option<El1Entry>,
    serror: bool,
}

impl FakeCpu {
    fn at(pc: u64) -> Self {
        Self {
            pc,
            pstate: 0x3c5,
            ..Self::default()
        }
    }
}

impl VcpuHw for FakeCpu {
    fn gpr(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }
    fn set_gpr(&mut self, n: u8, value: u64) {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = value;
        }
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    fn pstate(&self) -> u64 {
        self.pstate
    }
    fn set_pstate(&mut self, pstate: u64) {
        self.pstate = pstate;
    }
    fn vbar_el1(&self) -> u64 {
        0xffff_8000_1000_0000
    }
    fn set_el1_exception(&mut self, entry: &El1Entry) {
        self.el1 = Some(*entry);
    }
    fn pend_virtual_serror(&mut self) {
        self.serror = true;
    }
}

fn sync(ec: u8, iss: u64) -> Exit {
    Exit {
        reason: decode(ExitKind::Sync, u64::from(ec) << 26 | 1 << 25 | iss),
        far: 0,
        hpfar: 0,
    }
}

/// A data abort at `ipa` (FAR's page offset from `ipa`) with `iss`.
fn dabt(ipa: u64, iss: u64) -> Exit {
    Exit {
        far: 0xffff_0000_0000_0000 | (ipa & 0xfff),
        hpfar: (ipa >> 12) << 4,
        ..sync(ec::DABT_LOW, iss)
    }
}

const PSCI_VERSION: u64 = 0x8400_0000;
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON: u64 = 0xc400_0003;
const SYSTEM_OFF: u64 = 0x8400_0008;
const SYSTEM_RESET: u64 = 0x8400_0009;

#[test]
fn hvc_psci_version_answers_in_x0_and_resumes() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[0] = PSCI_VERSION;
    assert_eq!(step(&vm, &mut cpu, 0, sync(ec::HVC64, 0)), Action::Resume);
    assert_eq!(cpu.x[0], 0x1_0000, "PSCI 1.0");
    assert_eq!(cpu.pc, 0x1000, "HVC's ELR already points past it");
    assert_eq!(vm.count_of(Counter::Hvc), 1);
}

#[test]
fn smc_steps_over_the_instruction() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[0] = PSCI_VERSION;
    assert_eq!(step(&vm, &mut cpu, 0, sync(ec::SMC64, 0)), Action::Resume);
    assert_eq!((cpu.x[0], cpu.pc), (0x1_0000, 0x1004));
    assert_eq!(vm.count_of(Counter::Smc), 1);
}

#[test]
fn unknown_smccc_function_is_not_supported_not_an_abort() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[0] = 0xc200_0042;
    assert_eq!(step(&vm, &mut cpu, 0, sync(ec::HVC64, 0)), Action::Resume);
    assert_eq!(cpu.x[0], u64::MAX, "NOT_SUPPORTED (-1)");
    assert!(cpu.el1.is_none());
}

#[test]
fn cpu_on_requests_a_start_and_wakes_the_target_once() {
    let vm = FakeVm::new(2);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[..4].copy_from_slice(&[CPU_ON, 1, RAM.0 + 0x8000, 0x77]);
    assert_eq!(step(&vm, &mut cpu, 0, sync(ec::HVC64, 0)), Action::Resume);
    assert_eq!(cpu.x[0], 0, "SUCCESS");
    assert_eq!(vm.woken.get(), 1);
    // Again while its start is pending: an error, and nobody is woken.
    cpu.x[..4].copy_from_slice(&[CPU_ON, 1, RAM.0 + 0x9000, 0x78]);
    step(&vm, &mut cpu, 0, sync(ec::HVC64, 0));
    assert_ne!(cpu.x[0], 0);
    assert_eq!(vm.woken.get(), 1);
    let req = vm.power.take_start(1).expect("vCPU 1 asked to start");
    assert_eq!(
        (req.entry, req.context),
        (RAM.0 + 0x8000, 0x77),
        "the first request"
    );
}

#[test]
fn cpu_off_stops_the_vcpu_system_off_the_vm_system_reset_resets() {
    let vm = FakeVm::new(1);
    for (fid, want) in [
        (CPU_OFF, Action::StopVcpu),
        (SYSTEM_OFF, Action::StopVm),
        (SYSTEM_RESET, Action::ResetVm),
    ] {
        let mut cpu = FakeCpu::at(0x1000);
        cpu.x[0] = fid;
        assert_eq!(step(&vm, &mut cpu, 0, sync(ec::HVC64, 0)), want, "{fid:#x}");
    }
    assert!(vm.logged("PSCI SYSTEM_OFF") && vm.logged("PSCI SYSTEM_RESET"));
}

#[test]
fn wfi_waits_for_an_interrupt_and_wfe_resumes() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    assert_eq!(
        step(&vm, &mut cpu, 0, sync(ec::WFX, 0)),
        Action::WaitForInterrupt
    );
    assert_eq!(cpu.pc, 0x1004);
    assert_eq!(step(&vm, &mut cpu, 0, sync(ec::WFX, 1)), Action::Resume);
    assert_eq!(cpu.pc, 0x1008);
    assert_eq!(
        (vm.count_of(Counter::Wfi), vm.count_of(Counter::Wfe)),
        (1, 1)
    );
}

/// ISS of a trapped MSR/MRS of (op0, op1, CRn, CRm, op2) with Rt.
fn sysreg_iss(r: (u64, u64, u64, u64, u64), rt: u64, read: bool) -> u64 {
    r.0 << 20 | r.4 << 17 | r.1 << 14 | r.2 << 10 | rt << 5 | r.3 << 1 | u64::from(read)
}

#[test]
fn id_register_read_gives_the_curated_value() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    // ID_AA64MMFR0_EL1 (3, 0, 0, 7, 0) into x5.
    let exit = sync(ec::SYSREG, sysreg_iss((3, 0, 0, 7, 0), 5, true));
    assert_eq!(step(&vm, &mut cpu, 0, exit), Action::Resume);
    let want = vm.id_regs.read(SysReg::new(3, 0, 0, 7, 0)).unwrap();
    assert_eq!((cpu.x[5], cpu.pc), (want, 0x1004));
    assert_eq!(vm.count_of(Counter::SysReg), 1);
}

#[test]
fn sgi_write_goes_to_the_vgic() {
    let vm = FakeVm::new(2);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[3] = 0x0100_0001;
    let exit = sync(ec::SYSREG, sysreg_iss((3, 0, 12, 11, 5), 3, false));
    assert_eq!(step(&vm, &mut cpu, 1, exit), Action::Resume);
    assert_eq!(*vm.sgis.borrow(), [(1, 0x0100_0001)]);
    assert_eq!(cpu.pc, 0x1004);
}

#[test]
fn physical_timer_reads_and_writes_go_to_the_emulated_timer() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[2] = 0x99;
    // CNTP_CVAL_EL0 (3, 3, 14, 2, 2): MSR from x2, then MRS into x4.
    let write = sync(ec::SYSREG, sysreg_iss((3, 3, 14, 2, 2), 2, false));
    let read = sync(ec::SYSREG, sysreg_iss((3, 3, 14, 2, 2), 4, true));
    step(&vm, &mut cpu, 0, write);
    step(&vm, &mut cpu, 0, read);
    let log = vm.ptimer.borrow();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].2, Some(0x99));
    assert_eq!(log[1].2, None);
    assert_eq!((cpu.x[4], cpu.pc), (0x1234, 0x1008));
}

#[test]
fn writing_the_counter_or_an_unknown_register_is_undefined() {
    let vm = FakeVm::new(1);
    for iss in [
        sysreg_iss((3, 3, 14, 0, 1), 0, false), // MSR CNTPCT_EL0: read-only
        sysreg_iss((3, 0, 15, 15, 7), 0, true), // nothing there
    ] {
        let mut cpu = FakeCpu::at(0x1000);
        assert_eq!(
            step(&vm, &mut cpu, 0, sync(ec::SYSREG, iss)),
            Action::Resume
        );
        let e = cpu.el1.expect("UNDEFINED taken at EL1");
        assert_eq!(e.esr >> 26, 0, "EC 0: unknown reason");
        assert_eq!(e.elr, 0x1000, "returns to the instruction");
        assert_eq!(
            cpu.pc, 0xffff_8000_1000_0200,
            "current EL with SP_ELx vector"
        );
    }
    assert_eq!(vm.count_of(Counter::UndefInjected), 2);
    assert!(vm.logged("is not emulated: UNDEFINED injected"));
}

#[test]
fn stage2_fault_on_ram_goes_to_the_memory_core() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    let ipa = RAM.0 + 0x12_3456;
    // Translation fault level 3, read.
    assert_eq!(step(&vm, &mut cpu, 0, dabt(ipa, 0x07)), Action::Resume);
    // Write (WnR) and a stage-1 walk (S1PTW, counted as a write).
    step(&vm, &mut cpu, 0, dabt(ipa, 1 << 6 | 0x07));
    step(&vm, &mut cpu, 0, dabt(ipa, 1 << 7 | 0x06));
    {
        let f = vm.faults.borrow();
        assert_eq!(f[0], (Ipa::new(ipa), Access::Read));
        assert_eq!(f[1].1, Access::Write);
        assert_eq!(
            f[2].1,
            Access::Write,
            "a stage-1 walk may update descriptors"
        );
    }
    assert_eq!(vm.count_of(Counter::Stage2Mapped), 3);
    assert_eq!(cpu.pc, 0x1000, "the access re-runs");
    vm.fault.set(Ok(FaultOutcome::Retry));
    step(&vm, &mut cpu, 0, dabt(ipa, 0x07));
    assert_eq!(vm.count_of(Counter::Stage2Retry), 1);
}

#[test]
fn a_fault_the_core_cannot_serve_stops_the_vm() {
    let vm = FakeVm::new(1);
    vm.fault.set(Err(FaultError::OutOfMemory {
        ipa: Ipa::new(RAM.0),
    }));
    let mut cpu = FakeCpu::at(0x1000);
    assert_eq!(step(&vm, &mut cpu, 0, dabt(RAM.0, 0x07)), Action::StopVm);
    assert!(vm.logged("stopping the VM"));
}

#[test]
fn write_to_a_read_only_page_injects_an_abort() {
    let vm = FakeVm::new(1);
    vm.fault.set(Ok(FaultOutcome::PermissionDenied));
    let mut cpu = FakeCpu::at(0x1000);
    step(&vm, &mut cpu, 0, dabt(RAM.0 + 0x10, 1 << 6 | 0x0f));
    let e = cpu.el1.expect("abort taken at EL1");
    assert_eq!(e.esr >> 26, 0x25, "data abort, current EL");
    assert_eq!(e.esr & 1 << 6, 1 << 6, "on a write");
    assert_eq!(vm.count_of(Counter::AbortInjected), 1);
}

#[test]
fn abort_outside_ram_and_devices_is_injected_and_logged_once() {
    let vm = FakeVm::new(1);
    for _ in 0..2 {
        let mut cpu = FakeCpu::at(0x1000);
        assert_eq!(step(&vm, &mut cpu, 0, dabt(0x1_0000, 0x07)), Action::Resume);
        assert!(cpu.el1.is_some());
    }
    assert_eq!(vm.count_of(Counter::AbortInjected), 2);
    let logs = vm.logs.borrow();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].1.contains("nothing is mapped there"));
}

#[test]
fn abort_on_populated_ram_is_flagged_as_a_hypervisor_bug() {
    let mut vm = FakeVm::new(1);
    vm.backed.push(RAM.0);
    vm.restored = true;
    let mut cpu = FakeCpu::at(0x1000);
    // External abort (FSC 0x10) on a populated page: not a fault the core resolves.
    step(&vm, &mut cpu, 0, dabt(RAM.0 + 8, 0x10));
    assert!(vm.logged("hypervisor bug") && vm.logged("restored from its snapshot"));
    assert!(vm.logged("on guest RAM, not a fault the hypervisor resolves"));
}

/// ISS of an emulatable load/store: ISV, SAS, SRT, WnR, SF, translation fault level 3.
fn mmio_iss(sas: u64, rt: u64, write: bool) -> u64 {
    1 << 24 | sas << 22 | rt << 16 | 1 << 15 | u64::from(write) << 6 | 0x07
}

#[test]
fn mmio_store_goes_to_the_device_and_steps_over() {
    let vm = FakeVm::new(2);
    vm.device_kick.set(Some(1));
    let mut cpu = FakeCpu::at(0x1000);
    cpu.x[7] = 0x1_2345_6789;
    let exit = dabt(UART + 0x30, mmio_iss(2, 7, true));
    assert_eq!(step(&vm, &mut cpu, 0, exit), Action::Resume);
    let (v, kind, access) = vm.accesses.borrow()[0];
    assert_eq!((v, kind), (0, DeviceKind::Uart));
    assert_eq!(
        access,
        MmioAccess {
            offset: 0x30,
            size: AccessSize::Word,
            write: Some(0x2345_6789)
        },
        "truncated to the access width"
    );
    assert_eq!(cpu.pc, 0x1004);
    assert_eq!(
        *vm.kicks.borrow(),
        [1],
        "the other vCPU the access concerned"
    );
    assert_eq!(vm.count_of(Counter::Mmio), 1);
}

#[test]
fn mmio_load_writes_the_register_and_kicks_no_one_for_itself() {
    let vm = FakeVm::new(1);
    vm.device.set(Some(Ok(0xab)));
    vm.device_kick.set(Some(0));
    let mut cpu = FakeCpu::at(0x1000);
    step(&vm, &mut cpu, 0, dabt(UART + 0x18, mmio_iss(0, 9, false)));
    assert_eq!((cpu.x[9], cpu.pc), (0xab, 0x1004));
    assert!(vm.kicks.borrow().is_empty());
}

#[test]
fn mmio_without_syndrome_device_error_or_device_injects_an_abort() {
    // ISV = 0 (a load pair, say): nothing to emulate.
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    step(&vm, &mut cpu, 0, dabt(UART, 0x07));
    assert!(cpu.el1.is_some() && vm.accesses.borrow().is_empty());
    assert!(vm.logged("ISV is 0"));
    // The device refuses the access.
    let vm = FakeVm::new(1);
    vm.device.set(Some(Err(MmioError::Unaligned {
        offset: 1,
        size: AccessSize::Word,
    })));
    let mut cpu = FakeCpu::at(0x1000);
    step(&vm, &mut cpu, 0, dabt(UART + 1, mmio_iss(2, 0, false)));
    assert_eq!(cpu.el1.map(|e| e.esr >> 26), Some(0x25));
    // The VM has no UART.
    let vm = FakeVm::new(1);
    vm.device.set(None);
    let mut cpu = FakeCpu::at(0x1000);
    step(&vm, &mut cpu, 0, dabt(UART, mmio_iss(2, 0, false)));
    assert!(cpu.el1.is_some() && vm.logged("the VM has no such device"));
}

#[test]
fn instruction_abort_outside_ram_injects_a_prefetch_abort() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    let exit = Exit {
        far: 0xdead_0000,
        hpfar: (0xdead_0000u64 >> 12) << 4,
        ..sync(ec::IABT_LOW, 0x07)
    };
    step(&vm, &mut cpu, 0, exit);
    assert_eq!(
        cpu.el1.map(|e| (e.esr >> 26, e.far)),
        Some((0x21, Some(0xdead_0000)))
    );
    assert!(vm.logged("instruction abort, fetch"));
}

#[test]
fn irq_takes_what_arrived_and_resumes() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    let exit = Exit {
        reason: decode(ExitKind::Irq, 0),
        far: 0,
        hpfar: 0,
    };
    assert_eq!(step(&vm, &mut cpu, 0, exit), Action::Resume);
    assert_eq!((vm.irqs_taken.get(), vm.count_of(Counter::Irq)), (1, 1));
    assert_eq!(cpu.pc, 0x1000);
}

#[test]
fn fiq_is_counted_and_serror_pends_a_virtual_serror() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x1000);
    for kind in [ExitKind::Fiq, ExitKind::SError] {
        let exit = Exit {
            reason: decode(kind, 0xbe00_0000),
            far: 0,
            hpfar: 0,
        };
        assert_eq!(step(&vm, &mut cpu, 0, exit), Action::Resume);
    }
    assert!(cpu.serror);
    assert_eq!(
        (vm.count_of(Counter::Fiq), vm.count_of(Counter::SError)),
        (1, 1)
    );
    assert!(vm.logged("virtual SError injected"));
}

#[test]
fn unknown_exception_class_is_undefined() {
    let vm = FakeVm::new(1);
    let mut cpu = FakeCpu::at(0x2000);
    // EC 0x07: an FP access trapped (never enabled for guests here).
    step(&vm, &mut cpu, 0, sync(0x07, 0));
    assert_eq!(cpu.el1.map(|e| e.elr), Some(0x2000));
    assert!(vm.logged("UNDEFINED injected"));
}
