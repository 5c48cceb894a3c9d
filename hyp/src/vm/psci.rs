//! PSCI 1.0 and the SMCCC discovery calls, as a guest sees them (Arm DEN 0022, DEN 0028).
//!
//! Portable: the exit handler passes the guest's x0..x3 and the vCPU power states in, and gets
//! back the value for x0 plus what the hypervisor must do (start a vCPU, stop this one, end the
//! VM). Keeping the decision here, apart from the world switch, lets every argument check be
//! tested on the host. Unknown function IDs return NOT_SUPPORTED, never an abort: an SMCCC
//! caller is entitled to probe.
#![forbid(unsafe_code)]

/// PSCI return codes (signed, in x0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum PsciError {
    NotSupported = -1,
    InvalidParameters = -2,
    Denied = -3,
    AlreadyOn = -4,
    OnPending = -5,
    InternalFailure = -6,
    NotPresent = -7,
    Disabled = -8,
    InvalidAddress = -9,
}

impl PsciError {
    /// The value as the guest reads it in x0 (sign-extended to 64 bits).
    pub const fn to_x0(self) -> u64 {
        self as i32 as i64 as u64
    }
}

/// Function IDs (fast calls). `_64` variants use the SMC64 convention.
pub mod id {
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xC400_0003;
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
}

/// Versions we implement: PSCI 1.0, SMCCC 1.1.
pub const PSCI_VERSION_1_0: u64 = 0x0001_0000;
pub const SMCCC_VERSION_1_1: u64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE: no Trusted OS, so nothing needs migrating.
const NO_TRUSTED_OS: u64 = 2;

/// A vCPU's power state as PSCI reports it through AFFINITY_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// CPU_ON accepted, the vCPU has not run its first instruction yet.
    OnPending,
}

impl PowerState {
    const fn affinity_info(self) -> u64 {
        match self {
            Self::On => 0,
            Self::Off => 1,
            Self::OnPending => 2,
        }
    }
}

/// What the VM looks like to PSCI.
pub trait PsciVm {
    /// The vCPU index whose MPIDR affinity fields equal `mpidr` (Aff3..Aff0), if any.
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize>;
    fn power_state(&self, vcpu: usize) -> PowerState;
    /// Whether `ipa` is guest RAM a vCPU could start executing at.
    fn is_ram(&self, ipa: u64) -> bool;
}

/// What the caller must do after writing `x0` back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Nothing: resume the calling vCPU.
    None,
    /// Mark `vcpu` OnPending and start it at `entry` (EL1h, MMU off) with x0 = `context`.
    StartVcpu {
        vcpu: usize,
        entry: u64,
        context: u64,
    },
    /// Stop the calling vCPU (it does not return from the call).
    StopSelf,
    /// Power the whole VM off.
    SystemOff,
    SystemReset,
}

/// The outcome of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciOutcome {
    /// Value for the guest's x0 (meaningless for StopSelf/SystemOff/SystemReset).
    pub x0: u64,
    pub action: PsciAction,
}

const fn ok(x0: u64) -> PsciOutcome {
    PsciOutcome {
        x0,
        action: PsciAction::None,
    }
}

const fn err(e: PsciError) -> PsciOutcome {
    ok(e.to_x0())
}

/// The affinity fields of an MPIDR (Aff3 at bits 39:32, Aff2..Aff0 at 23:0).
pub const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

/// Handles one HVC/SMC with function ID `x[0]` and arguments `x[1..4]`.
pub fn handle(vm: &impl PsciVm, x: [u64; 4]) -> PsciOutcome {
    // SMCCC: bits 63:32 of a function ID passed in a 64-bit register are ignored... but only
    // for SMC32 calls; an SMC64 ID with junk above is simply unknown.
    let fid = x[0] as u32;
    let smc64 = fid & 0x4000_0000 != 0;
    // SMC32 callers pass 32-bit arguments in the low halves.
    let arg = |i: usize| if smc64 { x[i] } else { x[i] & 0xffff_ffff };
    match fid {
        id::SMCCC_VERSION => ok(SMCCC_VERSION_1_1),
        id::SMCCC_ARCH_FEATURES => match arg(1) as u32 {
            id::SMCCC_VERSION => ok(0),
            // No firmware workarounds are offered: the guest keeps its own mitigations.
            _ => err(PsciError::NotSupported),
        },
        id::PSCI_VERSION => ok(PSCI_VERSION_1_0),
        id::PSCI_FEATURES => {
            let queried = arg(1) as u32;
            if arg(1) > u64::from(u32::MAX) {
                err(PsciError::NotSupported)
            } else if is_implemented(queried) {
                ok(0)
            } else {
                err(PsciError::NotSupported)
            }
        }
        id::MIGRATE_INFO_TYPE => ok(NO_TRUSTED_OS),
        id::CPU_OFF => PsciOutcome {
            x0: PsciError::Denied.to_x0(),
            action: PsciAction::StopSelf,
        },
        id::CPU_ON | id::CPU_ON_64 => cpu_on(vm, arg(1), arg(2), arg(3)),
        id::AFFINITY_INFO | id::AFFINITY_INFO_64 => {
            if arg(2) != 0 {
                // Only level 0 (a single vCPU) is described: we have no clusters to report.
                return err(PsciError::InvalidParameters);
            }
            match vm.vcpu_by_mpidr(arg(1) & MPIDR_AFF_MASK) {
                Some(v) => ok(vm.power_state(v).affinity_info()),
                None => err(PsciError::InvalidParameters),
            }
        }
        id::SYSTEM_OFF => PsciOutcome {
            x0: 0,
            action: PsciAction::SystemOff,
        },
        id::SYSTEM_RESET => PsciOutcome {
            x0: 0,
            action: PsciAction::SystemReset,
        },
        _ => err(PsciError::NotSupported),
    }
}

fn is_implemented(fid: u32) -> bool {
    matches!(
        fid,
        id::PSCI_VERSION
            | id::CPU_OFF
            | id::CPU_ON
            | id::CPU_ON_64
            | id::AFFINITY_INFO
            | id::AFFINITY_INFO_64
            | id::MIGRATE_INFO_TYPE
            | id::SYSTEM_OFF
            | id::SYSTEM_RESET
            | id::PSCI_FEATURES
            | id::SMCCC_VERSION
    )
}

fn cpu_on(vm: &impl PsciVm, target: u64, entry: u64, context: u64) -> PsciOutcome {
    if target & !MPIDR_AFF_MASK != 0 {
        return err(PsciError::InvalidParameters);
    }
    let Some(vcpu) = vm.vcpu_by_mpidr(target) else {
        return err(PsciError::InvalidParameters);
    };
    match vm.power_state(vcpu) {
        PowerState::On => return err(PsciError::AlreadyOn),
        PowerState::OnPending => return err(PsciError::OnPending),
        PowerState::Off => {}
    }
    // A64 instructions are 4-byte aligned; an entry outside RAM would only fault in the guest.
    if !entry.is_multiple_of(4) || !vm.is_ram(entry) {
        return err(PsciError::InvalidAddress);
    }
    PsciOutcome {
        x0: 0,
        action: PsciAction::StartVcpu {
            vcpu,
            entry,
            context,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Vm {
        states: Vec<PowerState>,
    }

    impl PsciVm for Vm {
        fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
            // Two clusters of 16, like guest-loader's vcpu_mpidr.
            let (aff0, aff1) = (mpidr & 0xff, (mpidr >> 8) & 0xff);
            if mpidr >> 16 != 0 || aff0 > 15 {
                return None;
            }
            let i = (aff1 * 16 + aff0) as usize;
            (i < self.states.len()).then_some(i)
        }
        fn power_state(&self, vcpu: usize) -> PowerState {
            self.states[vcpu]
        }
        fn is_ram(&self, ipa: u64) -> bool {
            (0x4000_0000..0x6000_0000).contains(&ipa)
        }
    }

    fn vm() -> Vm {
        Vm {
            states: vec![PowerState::On, PowerState::Off, PowerState::OnPending],
        }
    }

    #[test]
    fn versions_and_features() {
        let v = vm();
        assert_eq!(
            handle(&v, [id::PSCI_VERSION as u64, 0, 0, 0]),
            ok(PSCI_VERSION_1_0)
        );
        assert_eq!(
            handle(&v, [id::SMCCC_VERSION as u64, 0, 0, 0]),
            ok(SMCCC_VERSION_1_1)
        );
        assert_eq!(
            handle(&v, [id::PSCI_FEATURES as u64, id::CPU_ON_64 as u64, 0, 0]),
            ok(0)
        );
        assert_eq!(
            handle(&v, [id::PSCI_FEATURES as u64, id::CPU_SUSPEND as u64, 0, 0]),
            err(PsciError::NotSupported)
        );
        assert_eq!(handle(&v, [id::MIGRATE_INFO_TYPE as u64, 0, 0, 0]), ok(2));
        // The Spectre workaround query is answered, not faulted.
        assert_eq!(
            handle(&v, [id::SMCCC_ARCH_FEATURES as u64, 0x8000_8000, 0, 0]),
            err(PsciError::NotSupported)
        );
    }

    #[test]
    fn cpu_on_checks_target_state_and_entry() {
        let v = vm();
        let on = |target: u64, entry: u64| handle(&v, [id::CPU_ON_64 as u64, target, entry, 7]);
        assert_eq!(
            on(1, 0x4008_0000),
            PsciOutcome {
                x0: 0,
                action: PsciAction::StartVcpu {
                    vcpu: 1,
                    entry: 0x4008_0000,
                    context: 7
                }
            }
        );
        assert_eq!(on(0, 0x4008_0000), err(PsciError::AlreadyOn));
        assert_eq!(on(2, 0x4008_0000), err(PsciError::OnPending));
        assert_eq!(on(3, 0x4008_0000), err(PsciError::InvalidParameters));
        assert_eq!(on(1 << 60, 0x4008_0000), err(PsciError::InvalidParameters));
        assert_eq!(on(1, 0x1000), err(PsciError::InvalidAddress));
        assert_eq!(on(1, 0x4008_0002), err(PsciError::InvalidAddress));
        // SMC32 CPU_ON sees only the low 32 bits of each argument.
        let r = handle(
            &v,
            [id::CPU_ON as u64, 0xdead_0000_0000_0001, 0x4000_1000, 0],
        );
        assert!(matches!(r.action, PsciAction::StartVcpu { vcpu: 1, .. }));
    }

    #[test]
    fn affinity_info_reports_each_state() {
        let v = vm();
        let info = |t: u64, lvl: u64| handle(&v, [id::AFFINITY_INFO_64 as u64, t, lvl, 0]);
        assert_eq!(info(0, 0), ok(0));
        assert_eq!(info(1, 0), ok(1));
        assert_eq!(info(2, 0), ok(2));
        assert_eq!(info(9, 0), err(PsciError::InvalidParameters));
        assert_eq!(info(0, 1), err(PsciError::InvalidParameters));
    }

    #[test]
    fn power_calls_ask_for_the_right_action() {
        let v = vm();
        assert_eq!(
            handle(&v, [id::CPU_OFF as u64, 0, 0, 0]).action,
            PsciAction::StopSelf
        );
        assert_eq!(
            handle(&v, [id::SYSTEM_OFF as u64, 0, 0, 0]).action,
            PsciAction::SystemOff
        );
        assert_eq!(
            handle(&v, [id::SYSTEM_RESET as u64, 0, 0, 0]).action,
            PsciAction::SystemReset
        );
        assert_eq!(PsciError::NotSupported.to_x0(), u64::MAX);
    }

    proptest! {
        /// Any register contents: never a panic, and an unknown ID is NOT_SUPPORTED.
        #[test]
        fn any_call_is_answered(x in any::<[u64; 4]>()) {
            let v = vm();
            let r = handle(&v, x);
            if !is_implemented(x[0] as u32) && x[0] as u32 != id::SMCCC_ARCH_FEATURES {
                prop_assert_eq!(r, err(PsciError::NotSupported));
            }
        }
    }
}
