//! A guest's console output, cut into whole lines so the physical console (shared with the
//! hypervisor's log and other guests) never interleaves two writers mid-line.
//!
//! The arch layer feeds the bytes the virtual PL011 transmits and prints each finished line
//! with the VM's prefix. A piece comes out when a line ends at `\n`, when the buffer is full
//! (a long line comes out in pieces that the console keeps on one line, rather than being
//! lost), or when the arch layer flushes an unfinished line (a prompt, once the guest idles).
//! `\r` is dropped: the console adds its own line ending.
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

    /// Adds `byte`; calls `emit(piece, ends_line)` with a finished line (without its `\n`,
    /// `ends_line` true) or a full buffer's worth of a longer line (`ends_line` false).
    pub fn push(&mut self, byte: u8, emit: impl FnOnce(&[u8], bool)) {
        match byte {
            b'\r' => {}
            b'\n' => {
                emit(&self.buf[..self.len], true);
                self.len = 0;
            }
            b => {
                self.buf[self.len] = b;
                self.len += 1;
                if self.len == LINE_MAX {
                    emit(&self.buf, false);
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

    fn feed(lb: &mut LineBuffer, bytes: &[u8], out: &mut Vec<Vec<u8>>, ends_line: &mut Vec<bool>) {
        for &b in bytes {
            lb.push(b, |l, ends| {
                out.push(l.to_vec());
                ends_line.push(ends);
            });
        }
    }

    #[test]
    fn lines_come_out_whole_without_cr() {
        let mut lb = LineBuffer::new();
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        feed(&mut lb, b"hello\r\nwor", &mut out, &mut ends);
        assert_eq!(out, vec![b"hello".to_vec()]);
        assert_eq!(lb.pending(), 3);
        feed(&mut lb, b"ld\n\n", &mut out, &mut ends);
        assert_eq!(out, vec![b"hello".to_vec(), b"world".to_vec(), vec![]]);
        assert_eq!(ends, vec![true; 3]);
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let mut lb = LineBuffer::new();
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let long = vec![b'x'; LINE_MAX + 5];
        feed(&mut lb, &long, &mut out, &mut ends);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE_MAX);
        // The piece leaves the line open: the rest follows on the same console line.
        assert_eq!(ends, vec![false]);
        lb.flush(|l| out.push(l.to_vec()));
        assert_eq!(out[1], vec![b'x'; 5]);
        // Nothing left: a second flush emits nothing.
        lb.flush(|_| panic!("empty buffer flushed"));
    }
}
