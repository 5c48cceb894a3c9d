//! Watching the consoles for the texts unattended operations wait for (`hyp.*=...@after:TEXT`;
//! the grammar of [`Trigger`] is `hyp_formats::monitor::trigger`, re-exported here).
//!
//! [`ConsoleWatch`] scans the bytes a console prints for the texts operations wait for. It
//! keeps the tail of each console's current line, so a text matches within one line whatever
//! pieces the guest writes it in, and never across a line break.
#![forbid(unsafe_code)]

pub use hyp_formats::monitor::trigger::{AFTER, ConsoleText, TEXT_MAX, Trigger};

use alloc::vec::Vec;

/// The last [`TEXT_MAX`] bytes of one console's current line.
#[derive(Clone)]
struct LineTail {
    buf: [u8; TEXT_MAX],
    len: usize,
}

impl LineTail {
    const fn new() -> Self {
        Self {
            buf: [0; TEXT_MAX],
            len: 0,
        }
    }

    /// Adds a printed byte: a line break starts a new line; `\r` belongs to the break.
    fn push(&mut self, b: u8) {
        match b {
            b'\n' => self.len = 0,
            b'\r' => {}
            b => {
                if self.len == TEXT_MAX {
                    self.buf.copy_within(1.., 0);
                    self.len -= 1;
                }
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn ends_with(&self, text: &[u8]) -> bool {
        self.buf[..self.len].ends_with(text)
    }
}

/// Items waiting for texts on the consoles of VMs `0..vms` (by index).
pub struct ConsoleWatch<T> {
    tails: Vec<LineTail>,
    /// (VM index, text, item), in the order watched.
    waiting: Vec<(usize, ConsoleText, T)>,
}

impl<T> ConsoleWatch<T> {
    pub fn new(vms: usize) -> Self {
        Self {
            tails: alloc::vec![LineTail::new(); vms],
            waiting: Vec::new(),
        }
    }

    /// Waits for VM `vm` to print `text`; `None` (and nothing watched) if there is no such VM.
    pub fn watch(&mut self, vm: usize, text: ConsoleText, item: T) -> Option<()> {
        (vm < self.tails.len()).then(|| self.waiting.push((vm, text, item)))
    }

    /// Nothing is waiting any more.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// VM `vm` printed `byte`: hands `fired` each item whose text that byte completed, in the
    /// order they were watched, and stops watching for them.
    pub fn byte(&mut self, vm: usize, byte: u8, mut fired: impl FnMut(T)) {
        let Some(tail) = self.tails.get_mut(vm) else {
            return;
        };
        tail.push(byte);
        let tail = &self.tails[vm];
        if byte == b'\n' || byte == b'\r' {
            return;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let (v, text, _) = &self.waiting[i];
            if *v == vm && tail.ends_with(text.as_str().as_bytes()) {
                fired(self.waiting.remove(i).2);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
