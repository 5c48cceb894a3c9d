//! Coherent snapshots of a VM to a file on the host (semihosting), in the `snapshot` format:
//! the writer is stopped first (every vCPU parked, see `control`), then every vCPU's saved
//! state, the vGIC and virtual UART state and every populated page are written, and the VM
//! continues unless it was paused before.
//!
//! Live snapshots (`--live`, pre-copy) keep the other vCPUs running while pages are copied
//! under dirty logging; the executing pCPU's own vCPU is held at EL2 meanwhile. The header is
//! written before the pre-copy, so the guest's counter when the vCPUs stopped goes in a TIMER
//! section: restored with the header's, the guest's clock went back by the pre-copy's length
//! and a restored Linux stalled.

use super::control::{self, VcpuSaved};
use super::{Guest, frames};
use crate::arch::aarch64::semihosting::{HostFile, HostFileError};
use crate::arch::aarch64::stage2::HwFrameData;
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
    if req.base.is_some() {
        say(format_args!(
            "{}: snapshot: diff snapshots are not implemented yet; take a full one",
            t.name
        ));
        return;
    }
    if req.live {
        match take_live(t, me, req.file.as_str()) {
            Ok(r) => crate::monitor::stats::snapshot_report(
                &crate::monitor::stats::SnapshotReport {
                    file: req.file.as_str(),
                    live: true,
                    diff: false,
                    rounds: &r.rounds,
                    paused_pages: r.paused_pages,
                    paused_us: r.paused_us,
                    file_bytes: r.bytes,
                },
                &mut |a| say(a),
            ),
            Err(e) => say(format_args!("{}: live snapshot {}: {e}", t.name, req.file)),
        }
        control::resume(t);
        return;
    }
    let was_paused = t.control.pause_requested() && me.is_none();
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

type Writer<'s> = SnapshotWriter<&'s mut HostSink>;
type Failure = alloc::string::String;

fn text(e: impl core::fmt::Display) -> Failure {
    use alloc::string::ToString;
    e.to_string()
}

fn header(t: &Guest, live: bool) -> Result<Header, Failure> {
    let name = VmName::new(t.name).ok_or("the VM's name does not fit the format")?;
    Ok(Header {
        id: counter(),
        kind: Kind::Full,
        config: VmConfig {
            name,
            vcpus: t.power.vcpus() as u32,
            ram_base: t.ram.0,
            ram_size: t.ram.1,
            counter_freq: counter_frequency(),
        },
        counter: counter().wrapping_sub(t.hw.cntvoff),
        live,
    })
}

/// Every vCPU's saved state and the devices' state (the VM is paused).
fn write_states(w: &mut Writer<'_>, t: &Guest) -> Result<(), Failure> {
    for v in 0..t.power.vcpus() {
        let saved = if t.power.is_off(v) {
            None
        } else {
            control::saved(t, v)
        };
        w.vcpu(&vcpu_state(v, saved)).map_err(text)?;
    }
    // The guest's time when its vCPUs stopped (the header's is from the start of a live one).
    let now = counter().wrapping_sub(t.hw.cntvoff);
    w.device(DeviceKind::Timer, &now.to_le_bytes())
        .map_err(text)?;
    let dev = t.devices.lock();
    let vgic = dev.vgic.save_state().map_err(|e| alloc::format!("{e:?}"))?;
    w.device(DeviceKind::Vgic, &vgic).map_err(text)?;
    if let Some(u) = dev.uart.as_ref() {
        w.device(DeviceKind::Uart, &u.save_state()).map_err(text)?;
    }
    Ok(())
}

/// Writes the populated pages of `t` that `pick(page index)` selects, in runs; returns how
/// many. Each page is copied into `buf` first, so a page the guest writes meanwhile is still
/// written whole (its dirty bit brings it again in the next round).
fn write_pages(
    w: &mut Writer<'_>,
    t: &Guest,
    buf: &mut [u8],
    pick: impl Fn(u64) -> bool,
) -> Result<u64, Failure> {
    let (base, pages) = (t.ram.0, t.ram.1 / PAGE_SIZE);
    let mut written = 0;
    let mut i = 0u64;
    while i < pages {
        let mut n = 0u64;
        while n < RUN_PAGES && i + n < pages && pick(i + n) {
            let GuestPage::Owned(pfn) = t.mem.backing(Ipa::new(base + (i + n) * PAGE_SIZE)) else {
                break;
            };
            let at = (n * PAGE_SIZE) as usize;
            // SAFETY: the frame is the VM's, RAM mapped at EL2; a concurrent guest write can
            // tear this copy only for a page whose dirty bit sends it again later.
            let src = unsafe {
                core::slice::from_raw_parts(pfn.base().raw() as *const u8, PAGE_SIZE as usize)
            };
            buf[at..at + PAGE_SIZE as usize].copy_from_slice(src);
            n += 1;
        }
        if n == 0 {
            i += 1;
            continue;
        }
        w.pages(base / PAGE_SIZE + i, &buf[..(n * PAGE_SIZE) as usize])
            .map_err(text)?;
        written += n;
        i += n;
    }
    Ok(written)
}

/// Writes the paused VM `t` to `path`; returns (pages, bytes).
fn write(t: &Guest, path: &str) -> Result<(u64, u64), Failure> {
    let header = header(t, false)?;
    let mut sink = HostSink::new(HostFile::create(path).map_err(text)?);
    let mut w = SnapshotWriter::begin(&mut sink, &header).map_err(text)?;
    write_states(&mut w, t)?;
    let mut buf = alloc::vec![0u8; (RUN_PAGES * PAGE_SIZE) as usize];
    write_pages(&mut w, t, &mut buf, |_| true)?;
    let summary = w.finish().map_err(text)?;
    sink.flush().map_err(text)?;
    Ok((summary.pages, summary.bytes))
}

/// Pre-copy rounds at most; the last dirty pages then go while the VM is paused.
const MAX_ROUNDS: usize = 8;
/// A round that finds this few dirty pages ends the pre-copy.
const SMALL_ROUND: u64 = 256;

/// What a live snapshot did.
struct LiveReport {
    /// Pages written per round: the first copy, then each harvest's.
    rounds: alloc::vec::Vec<u64>,
    paused_pages: u64,
    paused_us: u64,
    bytes: u64,
}

/// A live (pre-copy) snapshot: dirty logging on, every populated page copied while the other
/// vCPUs run, then rounds of harvest + copy until a round is small or `MAX_ROUNDS`, then the
/// VM is paused for the last dirty pages and the vCPU and device state. `me` (this pCPU's vCPU
/// of `t`, if any) is held at EL2 throughout.
fn take_live(t: &Guest, me: Option<usize>, path: &str) -> Result<LiveReport, Failure> {
    t.mem
        .enable_dirty_log(frames(), &mut HwFrameData, 0)
        .map_err(|e| alloc::format!("{e} (a live snapshot needs the dirty log to itself)"))?;
    let result = live_rounds(t, me, path);
    let _ = t.mem.disable_dirty_log(frames(), &mut HwFrameData, 0);
    result
}

fn live_rounds(t: &Guest, me: Option<usize>, path: &str) -> Result<LiveReport, Failure> {
    let header = header(t, true)?;
    let mut sink = HostSink::new(HostFile::create(path).map_err(text)?);
    let mut w = SnapshotWriter::begin(&mut sink, &header).map_err(text)?;
    let mut buf = alloc::vec![0u8; (RUN_PAGES * PAGE_SIZE) as usize];
    let mut rounds = alloc::vec![write_pages(&mut w, t, &mut buf, |_| true)?];
    let mut bits = alloc::vec![0u64; (t.ram.1 / PAGE_SIZE).div_ceil(64) as usize];
    let dirty = |bits: &[u64], i: u64| bits[(i / 64) as usize] & (1 << (i % 64)) != 0;
    for _ in 0..MAX_ROUNDS {
        let n = t.mem.harvest_dirty_log(0, &mut bits).map_err(text)?;
        if n <= SMALL_ROUND {
            // Left in `bits`: the final harvest ORs into them.
            break;
        }
        rounds.push(write_pages(&mut w, t, &mut buf, |i| dirty(&bits, i))?);
        bits.fill(0);
    }
    control::pause(t, me).map_err(text)?;
    let paused_at = counter();
    t.mem.harvest_dirty_log(0, &mut bits).map_err(text)?;
    let paused_pages = write_pages(&mut w, t, &mut buf, |i| dirty(&bits, i))?;
    write_states(&mut w, t)?;
    let summary = w.finish().map_err(text)?;
    sink.flush().map_err(text)?;
    let paused_us = (counter() - paused_at) * 1_000_000 / counter_frequency();
    Ok(LiveReport {
        rounds,
        paused_pages,
        paused_us,
        bytes: summary.bytes,
    })
}
