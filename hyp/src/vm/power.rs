//! The power state of each vCPU of a VM and the start requests PSCI CPU_ON leaves for the
//! physical CPU a vCPU is pinned to.
//!
//! Portable and lock-free: a vCPU's state moves `Off → OnPending` (CPU_ON, on the caller's
//! pCPU), `OnPending → On` (its own pCPU picks the request up), `On → Off` (CPU_OFF, or the VM
//! stopping). The compare-and-swap on `Off → OnPending` makes two racing CPU_ONs for the same
//! target give one success and one ALREADY_ON, never two starts.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::psci::{MPIDR_AFF_MASK, PowerState, PsciVm};

const OFF: u8 = 0;
const ON_PENDING: u8 = 1;
const ON: u8 = 2;
/// Claimed by a CPU_ON that is still writing the entry point: reported as OnPending, not yet
/// visible to the target's pCPU.
const CLAIMED: u8 = 3;

/// Where a vCPU starts (CPU_ON or the boot vCPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartRequest {
    pub entry: u64,
    pub context: u64,
}

struct VcpuPower {
    state: AtomicU8,
    mpidr: u64,
    entry: AtomicU64,
    context: AtomicU64,
}

/// Every vCPU's power state, and the guest RAM range PSCI checks entry points against.
pub struct VmPower {
    vcpus: Vec<VcpuPower>,
    ram: (u64, u64),
}

impl VmPower {
    /// `mpidrs[i]` is vCPU i's MPIDR affinity; guest RAM is `[ram_base, ram_base + ram_size)`.
    pub fn new(mpidrs: impl IntoIterator<Item = u64>, ram_base: u64, ram_size: u64) -> Self {
        Self {
            vcpus: mpidrs
                .into_iter()
                .map(|mpidr| VcpuPower {
                    state: AtomicU8::new(OFF),
                    mpidr: mpidr & MPIDR_AFF_MASK,
                    entry: AtomicU64::new(0),
                    context: AtomicU64::new(0),
                })
                .collect(),
            ram: (ram_base, ram_size),
        }
    }

    pub fn vcpus(&self) -> usize {
        self.vcpus.len()
    }

    /// Asks for `vcpu` to start at `req`. Returns false if it is not off (ALREADY_ON or
    /// ON_PENDING for the caller) or does not exist.
    pub fn request_start(&self, vcpu: usize, req: StartRequest) -> bool {
        let Some(v) = self.vcpus.get(vcpu) else {
            return false;
        };
        if v.state
            .compare_exchange(OFF, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        v.entry.store(req.entry, Ordering::Relaxed);
        v.context.store(req.context, Ordering::Relaxed);
        // Publish the request: the pinned pCPU only takes OnPending, which this Release store
        // makes visible after the entry/context stores above.
        v.state.store(ON_PENDING, Ordering::Release);
        true
    }

    /// On `vcpu`'s own pCPU: takes a pending start request and marks the vCPU on.
    pub fn take_start(&self, vcpu: usize) -> Option<StartRequest> {
        let v = self.vcpus.get(vcpu)?;
        if v.state.load(Ordering::Acquire) != ON_PENDING {
            return None;
        }
        let req = StartRequest {
            entry: v.entry.load(Ordering::Relaxed),
            context: v.context.load(Ordering::Relaxed),
        };
        v.state
            .compare_exchange(ON_PENDING, ON, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| req)
    }

    /// Whether `vcpu` is off (neither running nor asked to start); true for no such vCPU.
    pub fn is_off(&self, vcpu: usize) -> bool {
        self.vcpus
            .get(vcpu)
            .is_none_or(|v| v.state.load(Ordering::Acquire) == OFF)
    }

    /// `vcpu` stopped (CPU_OFF, or the VM went down).
    pub fn set_off(&self, vcpu: usize) {
        if let Some(v) = self.vcpus.get(vcpu) {
            v.state.store(OFF, Ordering::Release);
        }
    }
}

impl PsciVm for VmPower {
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        self.vcpus
            .iter()
            .position(|v| v.mpidr == mpidr & MPIDR_AFF_MASK)
    }
    fn power_state(&self, vcpu: usize) -> PowerState {
        match self.vcpus[vcpu].state.load(Ordering::Acquire) {
            OFF => PowerState::Off,
            ON_PENDING | CLAIMED => PowerState::OnPending,
            _ => PowerState::On,
        }
    }
    fn is_ram(&self, ipa: u64) -> bool {
        ipa >= self.ram.0 && ipa - self.ram.0 < self.ram.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::psci::{PsciAction, PsciError, handle, id};

    fn vm() -> VmPower {
        VmPower::new([0, 1, 0x100], 0x4000_0000, 0x100_0000)
    }

    const REQ: StartRequest = StartRequest {
        entry: 0x4008_0000,
        context: 7,
    };

    #[test]
    fn start_request_goes_off_pending_on_off() {
        let p = vm();
        assert_eq!(p.power_state(1), PowerState::Off);
        assert_eq!(p.take_start(1), None);
        assert!(p.request_start(1, REQ));
        assert_eq!(p.power_state(1), PowerState::OnPending);
        // A second request while pending is refused and does not overwrite the first.
        assert!(!p.request_start(
            1,
            StartRequest {
                entry: 0,
                context: 0
            }
        ));
        assert_eq!(p.take_start(1), Some(REQ));
        assert_eq!(p.power_state(1), PowerState::On);
        assert_eq!(p.take_start(1), None);
        assert!(!p.request_start(1, REQ));
        p.set_off(1);
        assert_eq!(p.power_state(1), PowerState::Off);
        assert!(!p.request_start(9, REQ));
    }

    #[test]
    fn psci_sees_mpidrs_ram_and_states() {
        let p = vm();
        assert_eq!(p.vcpu_by_mpidr(0x100), Some(2));
        assert_eq!(
            p.vcpu_by_mpidr(0x8000_0001),
            Some(1),
            "bit 31 is not affinity"
        );
        assert_eq!(p.vcpu_by_mpidr(2), None);
        assert!(p.is_ram(0x4000_0000) && p.is_ram(0x40ff_ffff));
        assert!(!p.is_ram(0x4100_0000) && !p.is_ram(0x3fff_ffff));
        // CPU_ON through the portable PSCI decision, then the request.
        assert!(p.request_start(0, REQ));
        assert!(p.take_start(0).is_some());
        let out = handle(&p, [u64::from(id::CPU_ON_64), 1, 0x4000_1000, 42]);
        assert_eq!(
            out.action,
            PsciAction::StartVcpu {
                vcpu: 1,
                entry: 0x4000_1000,
                context: 42
            }
        );
        let out = handle(&p, [u64::from(id::CPU_ON_64), 0, 0x4000_1000, 42]);
        assert_eq!(out.x0, PsciError::AlreadyOn.to_x0());
        let out = handle(&p, [u64::from(id::CPU_ON_64), 1, 0x1000, 42]);
        assert_eq!(out.x0, PsciError::InvalidAddress.to_x0());
    }

    #[test]
    fn a_taken_request_always_carries_its_entry() {
        // The target polls while the caller publishes: it must never see the state change
        // before the entry point (the bug: vCPU 1 started at 0).
        for _ in 0..200 {
            let p = vm();
            let seen = std::thread::scope(|s| {
                let poll = s.spawn(|| {
                    loop {
                        if let Some(r) = p.take_start(2) {
                            break r;
                        }
                        std::hint::spin_loop();
                    }
                });
                assert!(p.request_start(2, REQ));
                poll.join().unwrap()
            });
            assert_eq!(seen, REQ);
        }
    }

    #[test]
    fn racing_starts_give_exactly_one_winner() {
        let p = std::sync::Arc::new(vm());
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let p = p.clone();
                    s.spawn(move || usize::from(p.request_start(2, REQ)))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }
}
