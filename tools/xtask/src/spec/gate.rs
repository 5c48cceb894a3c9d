//! When console input is typed: a `send`'s [`Gate`] opens once the output shows what the lines
//! above it in the file expect. The runner asks while QEMU runs, so the guest gets each input
//! once it is ready for it rather than after a guessed delay.

use super::types::{Gate, Spec};

impl Gate {
    /// Whether `output` opens the gate.
    pub fn open(&self, spec: &Spec, output: &str) -> bool {
        self.expects <= expects_seen(spec, output)
            && spec.expect_anywhere[..self.anywhere.min(spec.expect_anywhere.len())]
                .iter()
                .all(|want| output.contains(want.as_str()))
    }
}

/// How many of `spec.expect` appear in `output`, each after the previous one.
pub fn expects_seen(spec: &Spec, output: &str) -> usize {
    let mut from = 0;
    for (i, want) in spec.expect.iter().enumerate() {
        match output[from..].find(want.as_str()) {
            Some(at) => from += at + want.len(),
            None => return i,
        }
    }
    spec.expect.len()
}
