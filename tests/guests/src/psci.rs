//! SMCCC calls over HVC/SMC and the PSCI 1.0 functions the tests use (Arm DEN 0028, DEN 0022).

use core::fmt;

/// Function IDs (fast calls).
pub mod id {
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xc400_0003;
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
}

/// SMCCC/PSCI error codes, as returned (sign-extended) in x0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    NotSupported,
    InvalidParameters,
    Denied,
    AlreadyOn,
    OnPending,
    InternalFailure,
    NotPresent,
    Disabled,
    InvalidAddress,
    /// A negative value PSCI does not define.
    Unknown(i64),
}

impl Error {
    /// Decodes a negative x0; `None` for success values (>= 0).
    pub fn from_x0(x0: u64) -> Option<Self> {
        let v = x0 as i64;
        Some(match v {
            0.. => return None,
            -1 => Self::NotSupported,
            -2 => Self::InvalidParameters,
            -3 => Self::Denied,
            -4 => Self::AlreadyOn,
            -5 => Self::OnPending,
            -6 => Self::InternalFailure,
            -7 => Self::NotPresent,
            -8 => Self::Disabled,
            -9 => Self::InvalidAddress,
            other => Self::Unknown(other),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(v) => write!(f, "undefined PSCI error {v}"),
            known => write!(f, "{known:?}"),
        }
    }
}

/// Interprets x0 as "0 or an error".
pub fn result(x0: u64) -> Result<u64, Error> {
    match Error::from_x0(x0) {
        Some(e) => Err(e),
        None => Ok(x0),
    }
}

/// One SMCCC call through `hvc #0`, returning x0. x1..x17 are treated as clobbered, which is
/// what SMCCC 1.0 allows.
pub fn hvc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let x0: u64;
    // SAFETY: an SMCCC call changes no memory of ours; every register SMCCC 1.0 lets the callee
    // change is declared clobbered.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inlateout("x0") u64::from(fid) => x0,
            inlateout("x1") a1 => _, inlateout("x2") a2 => _, inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    x0
}

/// As [`hvc`], through `smc #0`. Without EL3 (and no hypervisor trapping SMC) this is
/// UNDEFINED at EL1; callers that may run so must install a sync hook first.
pub fn smc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let x0: u64;
    // SAFETY: as in `hvc`.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inlateout("x0") u64::from(fid) => x0,
            inlateout("x1") a1 => _, inlateout("x2") a2 => _, inlateout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    x0
}

pub fn psci_version() -> u64 {
    hvc(id::PSCI_VERSION, 0, 0, 0)
}

/// PSCI_FEATURES: `Ok(flags)` when `fid` is implemented.
pub fn features(fid: u32) -> Result<u64, Error> {
    result(hvc(id::PSCI_FEATURES, u64::from(fid), 0, 0))
}

/// CPU_ON (SMC64) of the vCPU with affinity `mpidr`, starting at `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), Error> {
    result(hvc(id::CPU_ON_64, mpidr, entry, context)).map(|_| ())
}

/// AFFINITY_INFO (SMC64) at level 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    On,
    Off,
    OnPending,
}

pub fn affinity_info(mpidr: u64) -> Result<Affinity, Error> {
    match result(hvc(id::AFFINITY_INFO_64, mpidr, 0, 0))? {
        0 => Ok(Affinity::On),
        1 => Ok(Affinity::Off),
        2 => Ok(Affinity::OnPending),
        other => Err(Error::Unknown(other as i64)),
    }
}

/// CPU_OFF: returns only if the call failed.
pub fn cpu_off() -> Error {
    let x0 = hvc(id::CPU_OFF, 0, 0, 0);
    Error::from_x0(x0).unwrap_or(Error::Unknown(x0 as i64))
}

/// SYSTEM_OFF: returns only if the call failed.
pub fn system_off() -> u64 {
    hvc(id::SYSTEM_OFF, 0, 0, 0)
}
