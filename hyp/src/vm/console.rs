//! A guest's console output, cut into whole lines so the physical console (shared with the
//! hypervisor's log and other guests) never interleaves two writers mid-line.
//!
//! The arch layer feeds the bytes the virtual PL011 transmits and prints each finished line
//! with the VM's prefix. A line ends at `\n`, or when the buffer is full (long lines come out in
//! pieces rather than being lost). `\r` is dropped: the console adds its own line ending.
#![forbid(unsafe_code)]

/// Longest piece printed at once.
pub const LINE_MAX: usize = 160;

/// The unfinished line of one guest console.
pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Adds `byte`; calls `emit` with a finished line (without its `\n`).
    pub fn push(&mut self, byte: u8, emit: impl FnOnce(&[u8])) {
        match byte {
            b'\r' => {}
            b'\n' => {
                emit(&self.buf[..self.len]);
                self.len = 0;
            }
            b => {
                self.buf[self.len] = b;
                self.len += 1;
                if self.len == LINE_MAX {
                    emit(&self.buf);
                    self.len = 0;
                }
            }
        }
    }

    /// Emits what is buffered, if anything (e.g. when the VM powers off mid-line).
    pub fn flush(&mut self, emit: impl FnOnce(&[u8])) {
        if self.len > 0 {
            emit(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    pub fn pending(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuffer, bytes: &[u8], out: &mut Vec<Vec<u8>>) {
        for &b in bytes {
            lb.push(b, |l| out.push(l.to_vec()));
        }
    }

    #[test]
    fn lines_come_out_whole_without_cr() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        feed(&mut lb, b"hello\r\nwor", &mut out);
        assert_eq!(out, vec![b"hello".to_vec()]);
        assert_eq!(lb.pending(), 3);
        feed(&mut lb, b"ld\n\n", &mut out);
        assert_eq!(out, vec![b"hello".to_vec(), b"world".to_vec(), vec![]]);
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        let long = vec![b'x'; LINE_MAX + 5];
        feed(&mut lb, &long, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE_MAX);
        lb.flush(|l| out.push(l.to_vec()));
        assert_eq!(out[1], vec![b'x'; 5]);
        // Nothing left: a second flush emits nothing.
        lb.flush(|_| panic!("empty buffer flushed"));
    }
}
