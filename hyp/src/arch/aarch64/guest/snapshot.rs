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
//!
//! Diffs (`--base FILE`, like Firecracker's diff snapshots): after any snapshot completes (or a
//! restore), the VM's dirty log stays on as snapshot tracking (`dirty_users`), so the pages
//! written since that snapshot are known; a diff saves just those (coherent: while paused;
//! live: as the first pre-copy round) plus complete vCPU and device state, and tracking
//! continues from it. The base named must be the VM's latest snapshot (its header's id is
//! checked), so a chain base, diff 1, diff 2, ... restores the memory of the last. A reset
//! (memory given back) or a failed snapshot ends tracking: the next snapshot must be full.

use super::Guest;
use super::control::{self, VcpuSaved};
use super::dirty_users::{self, Tracked, User};
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
    let file = req.file.as_str();
    let kind = match &req.base {
        None => Kind::Full,
        Some(base) => match diff_base(t, base.as_str()) {
            Ok(base_id) => Kind::Diff { base_id },
            Err(e) => {
                say(format_args!("{}: snapshot {file}: {e}", t.name));
                return;
            }
        },
    };
    let diff = kind != Kind::Full;
    if req.live {
        match take_live(t, me, file, kind) {
            Ok(r) => crate::monitor::stats::snapshot_report(
                &crate::monitor::stats::SnapshotReport {
                    file,
                    live: true,
                    diff,
                    rounds: &r.rounds,
                    paused_pages: r.paused_pages,
                    paused_us: r.paused_us,
                    file_bytes: r.bytes,
                },
                &mut |a| say(a),
            ),
            Err(e) => say(format_args!("{}: live snapshot {file}: {e}", t.name)),
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
    match write(t, file, kind) {
        Ok((pages, bytes)) => {
            let us = (counter() - paused_at) * 1_000_000 / counter_frequency();
            if diff {
                crate::monitor::stats::snapshot_report(
                    &crate::monitor::stats::SnapshotReport {
                        file,
                        live: false,
                        diff,
                        rounds: &[],
                        paused_pages: pages,
                        paused_us: us,
                        file_bytes: bytes,
                    },
                    &mut |a| say(a),
                );
            } else {
                say(format_args!(
                    "{}: snapshot {file}: {pages} pages, {bytes} bytes, paused {us} us",
                    t.name
                ));
            }
        }
        Err(e) => say(format_args!("{}: snapshot {file}: {e}", t.name)),
    }
    if !was_paused {
        control::resume(t);
    }
}

/// The id a diff of `t` relative to the snapshot file `base` names: `base` must be the VM's
/// latest snapshot, the one its writes have been tracked since. (The request was refused
/// already if it names its base as its own file.)
fn diff_base(t: &Guest, base: &str) -> Result<u64, Failure> {
    let mut bytes = [0u8; crate::snapshot::HEADER_LEN];
    HostFile::open_read(base)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| alloc::format!("base {base}: {e}"))?;
    let h = Header::parse(&bytes).map_err(|e| alloc::format!("base {base}: {e}"))?;
    let Some(tracked) = t.dirty.lock().tracked.clone() else {
        return Err(alloc::format!(
            "base {base}: no writes of this VM are tracked since a snapshot; take a full one \
             first (tracking starts with it, and stops at a reset or a failed snapshot)"
        ));
    };
    if h.id != tracked.id {
        return Err(alloc::format!(
            "base {base} is snapshot {:#x}, but this VM's writes are tracked since its latest \
             snapshot {:#x} ({}); a diff is relative to the latest snapshot",
            h.id,
            tracked.id,
            tracked.file
        ));
    }
    Ok(h.id)
}

/// After a snapshot (`header`'s), successful or not: on success the VM's writes from now on
/// are what the next diff saves; on failure tracking stops (pages already harvested for
/// it are lost, so no diff may follow until a full snapshot).
fn track(t: &Guest, header: &Header, file: &str, ok: bool) {
    let mut d = t.dirty.lock();
    if ok {
        d.tracked = Some(Tracked {
            id: header.id,
            file: file.into(),
        });
    } else if let Err(e) = d.leave(t, User::Snapshots) {
        say(format_args!("{}: snapshot tracking off: {e}", t.name));
    }
}

/// Joins snapshot tracking for a snapshot of kind `kind` about to save `t`'s memory: a full
/// one starts tracking from now, a diff must already be tracking.
fn start_tracking(t: &Guest, kind: Kind) -> Result<(), Failure> {
    let mut d = t.dirty.lock();
    match kind {
        Kind::Full => {
            // Also right after joining: turning the log on counts every writable page as
            // dirty, and the full snapshot copies them all anyway.
            d.join(t, User::Snapshots)?;
            d.discard(t, User::Snapshots)?;
            d.tracked = None;
            Ok(())
        }
        // A reset (another pCPU) may have ended tracking since the base was checked.
        Kind::Diff { base_id }
            if d.is_user(User::Snapshots)
                && d.tracked.as_ref().is_some_and(|t| t.id == base_id) =>
        {
            Ok(())
        }
        Kind::Diff { .. } => Err("snapshot tracking stopped meanwhile".into()),
    }
}

/// vCPU `index`'s state, `ptimer` its emulated physical timer's (CTL, CVAL).
fn vcpu_state(index: usize, s: Option<VcpuSaved>, ptimer: (u64, u64)) -> VcpuState {
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
            cntp_ctl_el0: ptimer.0,
            cntp_cval_el0: ptimer.1,
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

fn header(t: &Guest, live: bool, kind: Kind) -> Result<Header, Failure> {
    let name = VmName::new(t.name).ok_or("the VM's name does not fit the format")?;
    Ok(Header {
        id: counter(),
        kind,
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
        let ptimer = t.devices.lock().ptimers[v].saved();
        w.vcpu(&vcpu_state(v, saved, ptimer)).map_err(text)?;
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

/// Writes the paused VM `t` to `path`, all its pages or (a diff) those written since its
/// base; returns (pages, bytes).
fn write(t: &Guest, path: &str, kind: Kind) -> Result<(u64, u64), Failure> {
    let header = header(t, false, kind)?;
    let result = start_tracking(t, kind).and_then(|()| write_paused(t, path, &header));
    track(t, &header, path, result.is_ok());
    result
}

fn write_paused(t: &Guest, path: &str, header: &Header) -> Result<(u64, u64), Failure> {
    let mut bits = alloc::vec![0u64; dirty_users::words(t)];
    let diff = header.kind != Kind::Full;
    if diff {
        t.dirty.lock().harvest(t, User::Snapshots, &mut bits)?;
    }
    let mut sink = HostSink::new(HostFile::create(path).map_err(text)?);
    let mut w = SnapshotWriter::begin(&mut sink, header).map_err(text)?;
    write_states(&mut w, t)?;
    let mut buf = alloc::vec![0u8; (RUN_PAGES * PAGE_SIZE) as usize];
    write_pages(&mut w, t, &mut buf, |i| !diff || dirty(&bits, i))?;
    let summary = w.finish().map_err(text)?;
    sink.flush().map_err(text)?;
    Ok((summary.pages, summary.bytes))
}

fn dirty(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] & (1 << (i % 64)) != 0
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

/// A live (pre-copy) snapshot: dirty logging on, every populated page (a diff: every page
/// written since its base) copied while the other vCPUs run, then rounds of harvest + copy
/// until a round is small or `MAX_ROUNDS`, then the VM is paused for the last dirty pages and
/// the vCPU and device state. `me` (this pCPU's vCPU of `t`, if any) is held at EL2
/// throughout. The dirty log stays on afterwards, tracking writes for the next diff.
fn take_live(t: &Guest, me: Option<usize>, path: &str, kind: Kind) -> Result<LiveReport, Failure> {
    let header = header(t, true, kind)?;
    let result = start_tracking(t, kind).and_then(|()| live_rounds(t, me, path, &header));
    track(t, &header, path, result.is_ok());
    result
}

fn live_rounds(
    t: &Guest,
    me: Option<usize>,
    path: &str,
    header: &Header,
) -> Result<LiveReport, Failure> {
    let harvest = |bits: &mut [u64]| t.dirty.lock().harvest(t, User::Snapshots, bits);
    let mut sink = HostSink::new(HostFile::create(path).map_err(text)?);
    let mut w = SnapshotWriter::begin(&mut sink, header).map_err(text)?;
    let mut buf = alloc::vec![0u8; (RUN_PAGES * PAGE_SIZE) as usize];
    let mut bits = alloc::vec![0u64; dirty_users::words(t)];
    let first = if header.kind == Kind::Full {
        write_pages(&mut w, t, &mut buf, |_| true)?
    } else {
        harvest(&mut bits)?;
        let n = write_pages(&mut w, t, &mut buf, |i| dirty(&bits, i))?;
        bits.fill(0);
        n
    };
    let mut rounds = alloc::vec![first];
    for _ in 0..MAX_ROUNDS {
        let n = harvest(&mut bits)?;
        if n <= SMALL_ROUND {
            // Left in `bits`: the final harvest ORs into them.
            break;
        }
        rounds.push(write_pages(&mut w, t, &mut buf, |i| dirty(&bits, i))?);
        bits.fill(0);
    }
    control::pause(t, me).map_err(text)?;
    let paused_at = counter();
    harvest(&mut bits)?;
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
