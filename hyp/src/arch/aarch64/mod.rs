//! aarch64 EL2: boot, vectors, system registers, TLB maintenance.
