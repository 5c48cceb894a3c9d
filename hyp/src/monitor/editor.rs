//! The monitor's line input: printable ASCII is kept and echoed, and a finished line comes out
//! on Enter. The editor only says what to echo; the arch layer prints it.
//!
//! Keys: Enter (CR, LF, or CR LF counted once) ends the line; backspace (DEL 0x7f or BS 0x08)
//! erases the last character; Ctrl-U erases the whole line; Ctrl-C abandons it and starts a new
//! prompt. A character past [`LINE_MAX`] is refused with a bell, never dropped silently. Other
//! control bytes are ignored, and so are terminal escape sequences (arrow keys: ESC [ A), so
//! they don't turn into stray text.
#![forbid(unsafe_code)]

use super::PROMPT;

/// Longest line, in bytes.
pub const LINE_MAX: usize = 120;

/// The terminal bell, echoed for a refused character.
pub const BELL: u8 = 0x07;

const BS: u8 = 0x08;
const DEL: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;

/// Moves the cursor back over one character and blanks it.
const ERASE: &[u8] = b"\x08 \x08";
const NEWLINE: &[u8] = b"\r\n";
const CANCEL: &[u8] = b"^C\r\n";

/// Room for the longest echo: erasing a full line.
const ECHO_MAX: usize = LINE_MAX * ERASE.len();
const _: () = assert!(CANCEL.len() + PROMPT.len() <= ECHO_MAX);

/// Where we are in a terminal escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After ESC [: parameters until a final byte 0x40..=0x7e.
    Csi,
    /// After ESC O: one more byte.
    Ss3,
}

/// What one byte did: bytes to print, and the line if it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit<'a> {
    pub echo: &'a [u8],
    /// The finished line (printable ASCII, without the line end).
    pub line: Option<&'a str>,
}

/// One line being typed at the monitor prompt.
pub struct LineEditor {
    buf: [u8; LINE_MAX],
    len: usize,
    /// The last byte was CR, so an LF right after it ends no second line.
    after_cr: bool,
    /// The last call returned the line in `buf`; the next byte starts a new one.
    line_out: bool,
    escape: Escape,
    echo: [u8; ECHO_MAX],
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
            after_cr: false,
            line_out: false,
            escape: Escape::None,
            echo: [0; ECHO_MAX],
        }
    }

    /// The line typed so far.
    pub fn pending(&self) -> &[u8] {
        if self.line_out {
            &[]
        } else {
            &self.buf[..self.len]
        }
    }

    /// Forgets the unfinished line without echoing (e.g. when the focus leaves the monitor).
    pub fn clear(&mut self) {
        self.len = 0;
        self.line_out = false;
        self.after_cr = false;
        self.escape = Escape::None;
    }

    /// Takes one typed byte.
    pub fn feed(&mut self, byte: u8) -> Edit<'_> {
        if self.line_out {
            self.line_out = false;
            self.len = 0;
        }
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        if self.in_escape(byte) {
            return self.echo_static(b"");
        }
        match byte {
            b'\n' if after_cr => self.echo_static(b""),
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                self.line_out = true;
                Edit {
                    echo: NEWLINE,
                    // Only printable ASCII gets into `buf`, so it is always UTF-8.
                    line: Some(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")),
                }
            }
            BS | DEL if self.len > 0 => {
                self.len -= 1;
                self.echo_static(ERASE)
            }
            CTRL_U => {
                let n = self.len * ERASE.len();
                for chunk in self.echo[..n].as_chunks_mut::<{ ERASE.len() }>().0 {
                    chunk.copy_from_slice(ERASE);
                }
                self.len = 0;
                Edit {
                    echo: &self.echo[..n],
                    line: None,
                }
            }
            CTRL_C => {
                self.len = 0;
                let n = CANCEL.len() + PROMPT.len();
                self.echo[..CANCEL.len()].copy_from_slice(CANCEL);
                self.echo[CANCEL.len()..n].copy_from_slice(PROMPT.as_bytes());
                Edit {
                    echo: &self.echo[..n],
                    line: None,
                }
            }
            ESC => {
                self.escape = Escape::Start;
                self.echo_static(b"")
            }
            0x20..=0x7e if self.len < LINE_MAX => {
                self.buf[self.len] = byte;
                self.len += 1;
                self.echo[0] = byte;
                Edit {
                    echo: &self.echo[..1],
                    line: None,
                }
            }
            0x20..=0x7e => self.echo_static(&[BELL]),
            _ => self.echo_static(b""),
        }
    }

    /// Whether `byte` belongs to an escape sequence (and is swallowed). A control byte ends
    /// the sequence and is handled as itself, so Enter or Ctrl-C always work.
    fn in_escape(&mut self, byte: u8) -> bool {
        if self.escape == Escape::None || byte < 0x20 || byte == DEL {
            self.escape = Escape::None;
            return false;
        }
        self.escape = match (self.escape, byte) {
            (Escape::Start, b'[') => Escape::Csi,
            (Escape::Start, b'O') => Escape::Ss3,
            (Escape::Csi, 0x20..=0x3f) => Escape::Csi,
            _ => Escape::None,
        };
        true
    }

    fn echo_static(&self, echo: &'static [u8]) -> Edit<'_> {
        Edit { echo, line: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Feeds `input`; returns everything echoed and the lines that came out.
    fn type_in(ed: &mut LineEditor, input: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut echo = Vec::new();
        let mut lines = Vec::new();
        for &b in input {
            let e = ed.feed(b);
            echo.extend_from_slice(e.echo);
            if let Some(l) = e.line {
                lines.push(String::from(l));
            }
        }
        (echo, lines)
    }

    #[test]
    fn typed_text_is_echoed_and_enter_yields_it() {
        let mut ed = LineEditor::new();
        let (echo, lines) = type_in(&mut ed, b"vms\r");
        assert_eq!(echo, b"vms\r\n");
        assert_eq!(lines, ["vms"]);
        assert_eq!(ed.pending(), b"");
    }

    #[test]
    fn cr_lf_is_one_line_end_but_lf_lf_is_two() {
        let mut ed = LineEditor::new();
        let (echo, lines) = type_in(&mut ed, b"a\r\nb\n\nc\r\rd\n\re");
        assert_eq!(lines, ["a", "b", "", "c", "", "d", ""]);
        assert_eq!(echo, b"a\r\nb\r\n\r\nc\r\n\r\nd\r\n\r\ne");
        assert_eq!(ed.pending(), b"e");
        // An LF long after a CR (other bytes between) ends a line again.
        let (_, lines) = type_in(&mut LineEditor::new(), b"\rx\n");
        assert_eq!(lines, ["", "x"]);
    }

    #[test]
    fn backspace_and_del_erase_one_character() {
        let mut ed = LineEditor::new();
        let (echo, lines) = type_in(&mut ed, b"vmx\x7fs\x08s\r");
        assert_eq!(lines, ["vms"]);
        assert_eq!(echo, b"vmx\x08 \x08s\x08 \x08s\r\n");
    }

    #[test]
    fn backspace_on_an_empty_line_does_nothing() {
        let mut ed = LineEditor::new();
        let (echo, lines) = type_in(&mut ed, b"\x7f\x08\x7fa\x7f\x7f\r");
        assert_eq!(echo, b"a\x08 \x08\r\n");
        assert_eq!(lines, [""]);
    }

    #[test]
    fn ctrl_u_erases_the_line_and_ctrl_c_abandons_it() {
        let mut ed = LineEditor::new();
        let (echo, lines) = type_in(&mut ed, b"abc\x15x\r");
        assert_eq!(lines, ["x"]);
        assert_eq!(echo, b"abc\x08 \x08\x08 \x08\x08 \x08x\r\n");
        let (echo, lines) = type_in(&mut ed, b"\x15pause\x03vms\r");
        assert_eq!(lines, ["vms"]);
        assert_eq!(echo, b"pause^C\r\nhyp> vms\r\n");
    }

    #[test]
    fn overlong_input_rings_the_bell_and_keeps_the_line() {
        let mut ed = LineEditor::new();
        let mut input = alloc::vec![b'x'; LINE_MAX + 3];
        input.extend_from_slice(b"\x7fy\r");
        let (echo, lines) = type_in(&mut ed, &input);
        let mut want = alloc::vec![b'x'; LINE_MAX];
        want.extend_from_slice(&[BELL; 3]);
        want.extend_from_slice(b"\x08 \x08y\r\n");
        assert_eq!(echo, want);
        let mut line = "x".repeat(LINE_MAX - 1);
        line.push('y');
        assert_eq!(lines, [line]);
        // A full line erased by Ctrl-U fits the echo buffer.
        let mut input = alloc::vec![b'z'; LINE_MAX];
        input.push(CTRL_U);
        let (echo, _) = type_in(&mut ed, &input);
        assert_eq!(echo.len(), LINE_MAX + ECHO_MAX);
        assert_eq!(ed.pending(), b"");
    }

    #[test]
    fn control_bytes_non_ascii_and_escape_sequences_are_ignored() {
        let mut ed = LineEditor::new();
        // Tab, NUL, Ctrl-A, UTF-8 é, up arrow (CSI), F1 (SS3), Alt-x, a CSI with parameters.
        let (echo, lines) = type_in(
            &mut ed,
            b"v\t\x00\x01\xc3\xa9m\x1b[A\x1bOPs\x1bx\x1b[1;5C\r",
        );
        assert_eq!(lines, ["vms"]);
        assert_eq!(echo, b"vms\r\n");
    }

    #[test]
    fn enter_and_ctrl_c_cut_an_unfinished_escape_sequence() {
        let mut ed = LineEditor::new();
        let (_, lines) = type_in(&mut ed, b"a\x1b[12\rb\x1b\x03c\r");
        assert_eq!(lines, ["a", "c"]);
    }

    #[test]
    fn clear_forgets_the_unfinished_line() {
        let mut ed = LineEditor::new();
        type_in(&mut ed, b"snap\x1b[");
        ed.clear();
        let (echo, lines) = type_in(&mut ed, b"A\r");
        assert_eq!(lines, ["A"]);
        assert_eq!(echo, b"A\r\n");
    }
}
