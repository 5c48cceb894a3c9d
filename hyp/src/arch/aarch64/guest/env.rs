//! The VM as `vm::step` sees it ([`VmEnv`]): counters, power state, stage-2 faults, device
//! windows and accesses, kicks and logging, on this hypervisor's hardware.

use super::*;

impl VmEnv for Guest {
    fn name(&self) -> &str {
        self.name
    }
    fn count(&self, c: Counter) {
        self.stats.count(c);
    }
    fn power(&self) -> &VmPower {
        &self.power
    }
    fn wake_starters(&self) {
        sev();
    }
    fn id_regs(&self) -> &GuestIdRegs {
        &self.id_regs
    }
    fn send_sgi(&self, v: usize, value: u64) {
        send_sgi(self, v, value);
    }
    /// Then the timer's line and deadline follow.
    fn ptimer_access(&self, v: usize, reg: TimerReg, write: Option<u64>) -> u64 {
        let now = guest_counter(self);
        let mut dev = self.devices.lock();
        let value = match write {
            Some(x) => {
                dev.ptimers[v].write(reg, x, now);
                0
            }
            None => dev.ptimers[v].read(reg, now),
        };
        drop(dev);
        ptimer_update(self, v);
        value
    }
    fn is_guest_memory(&self, ipa: Ipa) -> bool {
        self.mem.is_guest_memory(ipa)
    }
    fn is_backed(&self, ipa: Ipa) -> bool {
        self.mem.backing(ipa) != GuestPage::NoPage
    }
    fn restored(&self) -> bool {
        self.boot.is_none()
    }
    fn stage2_fault(&self, ipa: Ipa, access: Access) -> Result<FaultOutcome, FaultError> {
        prefer_block(self, ipa.raw());
        self.mem
            .handle_fault(frames(), &mut HwFrameData, ipa, access)
    }
    fn device_at(&self, ipa: Ipa) -> Option<(DeviceKind, u64)> {
        self.map.lookup(ipa)
    }
    fn device_access(
        &self,
        v: usize,
        kind: DeviceKind,
        access: MmioAccess,
    ) -> (Option<Result<u64, MmioError>>, Option<usize>) {
        self.devices.lock().access(v, kind, access, &self.input)
    }
    fn kick(&self, v: usize) {
        guest_irq::kick(self.first_pcpu + v);
    }
    fn take_physical_irqs(&self, v: usize) {
        deliver(self, v, guest_irq::drain());
    }
    fn log(&self, level: Level, args: core::fmt::Arguments<'_>) {
        match level {
            Level::Info => log::info!("{args}"),
            Level::Warn => log::warn!("{args}"),
            Level::Error => log::error!("{args}"),
        }
    }
    fn log_once(&self, which: step::Once, args: core::fmt::Arguments<'_>) {
        if which == step::Once::AbortOnRam {
            // Always an error: the hypervisor's own bug.
            if !self.logged[which as usize].swap(true, Ordering::Relaxed) {
                log::error!("{args}");
            }
            return;
        }
        log_once(self, which as usize, args);
    }
}

/// A message logged the first time `which` happens in `g`: an error while the guest has not
/// printed anything yet (it may never), a warning after.
pub(super) fn log_once(g: &Guest, which: usize, args: core::fmt::Arguments<'_>) {
    if g.logged[which].swap(true, Ordering::Relaxed) {
        return;
    }
    let id = GUESTS
        .get()
        .and_then(|gs| gs.iter().position(|x| core::ptr::eq(*x, g)))
        .map_or(0, |i| i + 1);
    let silent = !PRINTED.get(id).is_some_and(|p| p.load(Ordering::Relaxed));
    if silent && g.has_uart {
        log::error!(
            "{args}, before the guest printed anything on its console (it may never; logged once per VM)"
        );
    } else {
        log::warn!("{args} (logged once per VM)");
    }
}

/// On a first touch of an untouched 2 MiB block of guest RAM, backs the whole block with one
/// aligned run so the fault path can map it with one block entry. Best effort: without a free
/// run, or with a page of the block already backed, the fault path populates the single page.
pub(super) fn prefer_block(g: &Guest, ipa: u64) {
    donate_block(&g.mem, ipa);
}

/// Backs the untouched 2 MiB block of guest memory holding `ipa`, if it is one (best effort).
pub(super) fn donate_block(mem: &crate::mm::vm::Vm<HwPhysMem, HwTlb>, ipa: u64) {
    let _ = mem.populate_block(frames(), &mut HwFrameData, Ipa::new(ipa));
}
