//! Text from a remote fleetd (journal, `systemctl status`) reaches the operator's
//! terminal with its control characters made visible: a unit's log must not be able to
//! drive the terminal (ANSI/OSC escapes, C1 controls, title or clipboard writes).

use std::fmt::Write as _;

/// Escapes a byte stream chunk by chunk. Newline and tab pass through; other C0
/// controls and DEL in caret notation (`^[`, `^?`), C1 controls as `\u{9b}`, bytes that
/// are not UTF-8 as `\x9b`. A UTF-8 sequence split across chunks is kept until complete.
#[derive(Default)]
pub(super) struct Visible {
    pending: Vec<u8>,
}

impl Visible {
    /// The visible form of `chunk` (and of what an earlier chunk left incomplete).
    pub(super) fn push(&mut self, chunk: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let mut out = String::with_capacity(buf.len());
        let mut rest = &buf[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    escape_str(s, &mut out);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Checked by from_utf8 up to valid_up_to.
                    escape_str(std::str::from_utf8(valid).unwrap_or_default(), &mut out);
                    match e.error_len() {
                        Some(n) => {
                            escape_bytes(&after[..n], &mut out);
                            rest = &after[n..];
                        }
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Whatever was left incomplete at the end of the stream.
    pub(super) fn finish(&mut self) -> String {
        let mut out = String::new();
        escape_bytes(&std::mem::take(&mut self.pending), &mut out);
        out
    }
}

fn escape_str(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            '\u{7f}' => out.push_str("^?"),
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            _ => out.push(c),
        }
    }
}

fn escape_bytes(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let _ = write!(out, "\\x{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::Visible;

    fn all(chunks: &[&[u8]]) -> String {
        let mut v = Visible::default();
        let mut out: String = chunks.iter().map(|c| v.push(c)).collect();
        out.push_str(&v.finish());
        out
    }

    #[test]
    fn controls_are_visible_text_is_not_touched() {
        assert_eq!(
            all(&[b"\x1b]0;owned\x07\x1b[31mred\x1b[0m\tok\r\n\x00\x7f"]),
            "^[]0;owned^G^[[31mred^[[0m\tok^M\n^@^?"
        );
        assert_eq!(
            all(&["héllo ✓ \u{9b}2J\n".as_bytes()]),
            "héllo ✓ \\u{9b}2J\n"
        );
        assert_eq!(all(&[b"a\x9b2Jb\xff"]), "a\\x9b2Jb\\xff");
    }

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let s = "é✓".as_bytes();
        assert_eq!(all(&[&s[..1], &s[1..3], &s[3..]]), "é✓");
        // C1 CSI split across chunks is still escaped.
        assert_eq!(all(&[b"x\xc2", b"\x9b"]), "x\\u{9b}");
        // Cut off at the end of the stream: shown as bytes.
        assert_eq!(all(&[b"x\xe2\x9c"]), "x\\xe2\\x9c");
    }
}
