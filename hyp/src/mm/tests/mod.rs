//! Host tests of the VM memory layer on the simulated machine, and the property-based fuzzer.

mod fuzz;
mod harness;
mod units;
