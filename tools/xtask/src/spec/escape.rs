//! The escapes of `send` and `send-raw` values, so a test can type control characters (Ctrl-]
//! switches to the monitor) and bytes a text file cannot hold as they are.

/// A `send`/`send-raw` value as bytes, its escapes resolved; the error names the bad escape.
pub fn unescape(value: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let escape = &rest[at..];
        let (byte, len) = match escape.as_bytes().get(1) {
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'\\') => (b'\\', 2),
            Some(b'x') => {
                let hex = escape
                    .get(2..4)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                match hex {
                    Some(hex) => (u8::from_str_radix(hex, 16).expect("two hex digits"), 4),
                    None => return Err(escape.chars().take(4).collect()),
                }
            }
            _ => return Err(escape.chars().take(2).collect()),
        };
        out.push(byte);
        rest = &escape[len..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}
