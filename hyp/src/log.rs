//! Console log formatting: the line buffer and the timestamp; the `hyp.log=` boot argument is
//! `hyp_formats::log_level`, re-exported here. Portable and host-tested; the aarch64 backend
//! (`arch::aarch64::console`) adds the counter, the CPU number and the UART.
#![forbid(unsafe_code)]

pub use hyp_formats::log_level::{UnknownLevel, level_from_bootargs};

use core::fmt;

/// A fixed-size line, formatted before the console lock is taken so the lock is held only for
/// the UART writes. Text past the capacity is dropped and the line ends with `...`.
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> LineBuf<N> {
    const MARK: &'static [u8] = b"...";

    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// The line, ending with `...` if it was cut and without a newline.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = N - Self::MARK.len() - self.len;
        let bytes = s.as_bytes();
        if bytes.len() <= room {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.buf[self.len..self.len + room].copy_from_slice(&bytes[..room]);
            self.len += room;
            self.buf[self.len..self.len + Self::MARK.len()].copy_from_slice(Self::MARK);
            self.len += Self::MARK.len();
            self.truncated = true;
        }
        // Never fail: a cut line is better than none.
        Ok(())
    }
}

/// Time since boot as `[ssss.uuuuuu]`, from counter ticks and the counter frequency.
#[derive(Clone, Copy, Debug)]
pub struct Timestamp {
    pub ticks: u64,
    pub frequency: u64,
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let freq = self.frequency.max(1);
        let secs = self.ticks / freq;
        let micros = u128::from(self.ticks % freq) * 1_000_000 / u128::from(freq);
        write!(f, "[{secs:5}.{micros:06}]")
    }
}

/// The prefix of every log line: `[    0.001234] cpu0 INFO  `.
pub fn write_prefix(
    out: &mut dyn fmt::Write,
    time: Timestamp,
    cpu: usize,
    level: log::Level,
) -> fmt::Result {
    write!(out, "{time} cpu{cpu} {level:<5} ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn timestamp_pads_seconds_and_shows_microseconds() {
        let t = Timestamp {
            ticks: 62_500 * 3 + 77,
            frequency: 62_500_000,
        };
        assert_eq!(alloc::format!("{t}"), "[    0.003001]");
        let t = Timestamp {
            ticks: 62_500_000 * 12 + 31_250_000,
            frequency: 62_500_000,
        };
        assert_eq!(alloc::format!("{t}"), "[   12.500000]");
        // A zero frequency (broken firmware) must not divide by zero.
        let t = Timestamp {
            ticks: 5,
            frequency: 0,
        };
        assert_eq!(alloc::format!("{t}"), "[    5.000000]");
    }

    #[test]
    fn prefix_has_time_cpu_and_padded_level() {
        let mut line = LineBuf::<64>::new();
        let t = Timestamp {
            ticks: 1_000,
            frequency: 1_000_000,
        };
        write_prefix(&mut line, t, 3, log::Level::Warn).unwrap();
        assert_eq!(line.as_bytes(), b"[    0.001000] cpu3 WARN  ");
    }

    #[test]
    fn line_buffer_truncates_with_a_mark() {
        let mut line = LineBuf::<10>::new();
        write!(line, "abc").unwrap();
        assert!(!line.is_truncated());
        write!(line, "defghijkl").unwrap();
        assert!(line.is_truncated());
        assert_eq!(line.as_bytes(), b"abcdefg...");
        write!(line, "more").unwrap();
        assert_eq!(line.as_bytes(), b"abcdefg...");
    }
}
