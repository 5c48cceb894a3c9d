//! Coherent snapshots of a VM to a file on the host (semihosting), in the `snapshot` format:
//! the writer is stopped first (every vCPU parked, see `control`), then every vCPU's saved
//! state, the vGIC and virtual UART state and every populated page are written, and the VM
//! continues unless it was paused before.

use super::Guest;
use super::control::{self, VcpuSaved};
use crate::arch::aarch64::semihosting::{HostFile, HostFileError};
use crate::arch::aarch64::sysreg::{counter, counter_frequency};
use crate::mm::addr::{Ipa, PAGE_SIZE};
use crate::mm::ownership::GuestPage;
use crate::monitor::command::SnapshotRequest;
use crate::snapshot::{
    DeviceKind, El1Regs, GicCpuIf, Header, Kind, PowerState, SnapshotWriter, VcpuState, VmConfig,
    VmName,
};

/// Buffers snapshot bytes into large semihosting writes (each write is a trap to QEMU).
pub(super) struct HostSink {
    file: HostFile,
    buf: alloc::vec::Vec<u8>,
}

const SINK_BUF: usize = 1 << 20;

impl HostSink {
    fn new(file: HostFile) -> Self {
        Self {
            file,
            buf: alloc::vec::Vec::with_capacity(SINK_BUF),
        }
    }

    fn flush(&mut self) -> Result<(), HostFileError> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl crate::snapshot::Sink for HostSink {
    type Error = HostFileError;
    fn write(&mut self, bytes: &[u8]) -> Result<(), HostFileError> {
        if self.buf.len() + bytes.len() > SINK_BUF {
            self.flush()?;
        }
        if bytes.len() >= SINK_BUF {
            return self.file.write_all(bytes);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Largest run of pages copied into one PAGES section.
const RUN_PAGES: u64 = 256;

fn say(args: core::fmt::Arguments<'_>) {
    crate::arch::aarch64::console::print_line(args);
}

/// Takes the snapshot `req` of `t` on pCPU 0; `me` is this pCPU's vCPU if it belongs to `t`
/// (then already parked).
pub(super) fn take(t: &Guest, me: Option<usize>, req: &SnapshotRequest) {
    if req.live || req.base.is_some() {
        say(format_args!(
            "{}: snapshot: live and diff snapshots are not implemented yet; take a coherent one",
            t.name
        ));
        return;
    }
    let was_paused = t.control.pause_requested() && me.is_none();
    let start = counter();
    if let Err(e) = control::pause(t, me) {
        say(format_args!("{}: snapshot: {e}", t.name));
        return;
    }
    let paused_at = counter();
    match write(t, req.file.as_str()) {
        Ok((pages, bytes)) => {
            let us = (counter() - paused_at) * 1_000_000 / counter_frequency();
            say(format_args!(
                "{}: snapshot {}: {pages} pages, {bytes} bytes, paused {us} us",
                t.name, req.file
            ));
        }
        Err(e) => say(format_args!("{}: snapshot {}: {e}", t.name, req.file)),
    }
    let _ = start;
    if !was_paused {
        control::resume(t);
    }
}

fn vcpu_state(index: usize, s: Option<VcpuSaved>) -> VcpuState {
    let Some(s) = s else {
        return VcpuState {
            index: index as u32,
            pstate: 0x3c5,
            ..VcpuState::default()
        };
    };
    let e = &s.el1;
    VcpuState {
        index: index as u32,
        power: PowerState::On,
        x: s.regs.x,
        sp_el0: s.regs.sp_el0,
        pc: s.regs.pc,
        pstate: s.regs.pstate,
        el1: El1Regs {
            sctlr_el1: e.sctlr,
            ttbr0_el1: e.ttbr0,
            ttbr1_el1: e.ttbr1,
            tcr_el1: e.tcr,
            mair_el1: e.mair,
            amair_el1: e.amair,
            vbar_el1: e.vbar,
            contextidr_el1: e.contextidr,
            tpidr_el0: e.tpidr_el0,
            tpidr_el1: e.tpidr_el1,
            tpidrro_el0: e.tpidrro_el0,
            esr_el1: e.esr,
            far_el1: e.far,
            afsr0_el1: e.afsr0,
            afsr1_el1: e.afsr1,
            par_el1: e.par,
            cpacr_el1: e.cpacr,
            cntkctl_el1: e.cntkctl,
            cntv_ctl_el0: e.cntv_ctl,
            cntv_cval_el0: e.cntv_cval,
            mdscr_el1: e.mdscr,
            csselr_el1: e.csselr,
            sp_el1: e.sp_el1,
            elr_el1: e.elr_el1,
            spsr_el1: e.spsr_el1,
            apiakeylo_el1: e.pauth[0],
            apiakeyhi_el1: e.pauth[1],
            apibkeylo_el1: e.pauth[2],
            apibkeyhi_el1: e.pauth[3],
            apdakeylo_el1: e.pauth[4],
            apdakeyhi_el1: e.pauth[5],
            apdbkeylo_el1: e.pauth[6],
            apdbkeyhi_el1: e.pauth[7],
            apgakeylo_el1: e.pauth[8],
            apgakeyhi_el1: e.pauth[9],
        },
        q: s.fp.q,
        fpcr: s.fp.fpcr,
        fpsr: s.fp.fpsr,
        gic: GicCpuIf {
            ich_vmcr: s.gic.vmcr,
            ich_ap0r: s.gic.ap0r,
            ich_ap1r: s.gic.ap1r,
        },
    }
}

/// Writes the paused VM `t` to `path`; returns (pages, bytes).
fn write(t: &Guest, path: &str) -> Result<(u64, u64), alloc::string::String> {
    use alloc::string::ToString;
    let name = VmName::new(t.name).ok_or("the VM's name does not fit the format")?;
    let header = Header {
        id: counter(),
        kind: Kind::Full,
        config: VmConfig {
            name,
            vcpus: t.power.vcpus() as u32,
            ram_base: t.ram.0,
            ram_size: t.ram.1,
            counter_freq: counter_frequency(),
        },
        counter: counter().saturating_sub(t.hw.cntvoff),
        live: false,
    };
    let file = HostFile::create(path).map_err(|e| e.to_string())?;
    let mut sink = HostSink::new(file);
    let mut w = SnapshotWriter::begin(&mut sink, &header).map_err(|e| e.to_string())?;
    for v in 0..t.power.vcpus() {
        let saved = if t.power.is_off(v) {
            None
        } else {
            control::saved(t, v)
        };
        w.vcpu(&vcpu_state(v, saved)).map_err(|e| e.to_string())?;
    }
    {
        let dev = t.devices.lock();
        let vgic = dev.vgic.save_state().map_err(|e| alloc::format!("{e:?}"))?;
        w.device(DeviceKind::Vgic, &vgic)
            .map_err(|e| e.to_string())?;
        if let Some(u) = dev.uart.as_ref() {
            w.device(DeviceKind::Uart, &u.save_state())
                .map_err(|e| e.to_string())?;
        }
    }
    let mut buf = alloc::vec![0u8; (RUN_PAGES * PAGE_SIZE) as usize];
    let (base, end) = (t.ram.0, t.ram.0 + t.ram.1);
    let mut ipa = base;
    while ipa < end {
        // A run of populated pages, at most RUN_PAGES long.
        let mut n = 0u64;
        while n < RUN_PAGES && ipa + n * PAGE_SIZE < end {
            let GuestPage::Owned(pfn) = t.mem.backing(Ipa::new(ipa + n * PAGE_SIZE)) else {
                break;
            };
            let at = (n * PAGE_SIZE) as usize;
            // SAFETY: the frame is the VM's, RAM mapped at EL2; the VM is paused, so nothing
            // writes it while it is copied.
            let src = unsafe {
                core::slice::from_raw_parts(pfn.base().raw() as *const u8, PAGE_SIZE as usize)
            };
            buf[at..at + PAGE_SIZE as usize].copy_from_slice(src);
            n += 1;
        }
        if n == 0 {
            ipa += PAGE_SIZE;
            continue;
        }
        w.pages(ipa / PAGE_SIZE, &buf[..(n * PAGE_SIZE) as usize])
            .map_err(|e| e.to_string())?;
        ipa += n * PAGE_SIZE;
    }
    let summary = w.finish().map_err(|e| e.to_string())?;
    sink.flush().map_err(|e| e.to_string())?;
    Ok((summary.pages, summary.bytes))
}
