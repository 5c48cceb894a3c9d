//! Architecture code. Only aarch64 at EL2 exists.
pub mod aarch64;
