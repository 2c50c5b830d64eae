//! The unit-file lexer: go-systemd's `unit/deserialize.go` state machine, rewritten
//! over a `&str` cursor so that it cannot panic and every step consumes input.
//!
//! Where go-systemd and systemd disagree we follow go-systemd (fleet hashes what
//! go-systemd produces), with three deliberate exceptions, each of which only changes
//! files that go-systemd mangles:
//! * A comment line (first non-blank character `#` or `;`) *inside* a `\` continuation
//!   is skipped and the continuation goes on, as systemd does (systemd.syntax(7)).
//!   go-systemd would end the value at the comment and glue the comment text into it.
//! * `\r\n` ends a line completely. go-systemd strips only the `\n`, so a CRLF line
//!   ending in `\` never continues there; systemd continues it.
//! * An option line without `=` at the end of the file reports a clear message
//!   instead of go-systemd's bare `EOF`.
//!
//! And two refusals where go-systemd's reading and systemd's differ, found by fuzzing
//! (`fuzz/`): what fleet stores must be what the machine's systemd reads, and its
//! canonical form must parse back to the same options.
//! * A section name spanning lines (`[Unit` then `]` lines later): go-systemd reads
//!   up to the next `]`, systemd sees garbage lines.
//! * A value whose last line ends in a backslash that continues nothing (spaces after
//!   it, or the end of the file): written back, the backslash would glue the next
//!   option onto it.

use super::{ParseError, UnitOption};

/// go-systemd's `SYSTEMD_LINE_MAX`: systemd silently truncated longer lines.
pub(super) const LINE_MAX: usize = 2048;

/// A cursor over unit text that tracks the 1-based line number for errors.
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

/// Parses unit text into options; see the module doc for the rules.
pub(super) fn lex(text: &str) -> Result<Vec<UnitOption>, ParseError> {
    check_line_lengths(text)?;
    let mut lx = Lexer {
        text,
        pos: 0,
        line: 1,
    };
    let mut options = Vec::new();
    // Text before the first section is skipped rune by rune, as go-systemd does: a `[`
    // anywhere opens a section and a `#`/`;` anywhere starts a comment.
    loop {
        match lx.bump() {
            None => return Ok(options),
            Some('[') => break,
            Some('#' | ';') => lx.skip_comment(),
            Some(_) => {}
        }
    }
    let mut section = lx.section_header()?;
    while let Some(c) = lx.peek() {
        if c.is_whitespace() {
            lx.bump();
        } else if c == '[' {
            lx.bump();
            section = lx.section_header()?;
        } else if c == '#' || c == ';' {
            lx.bump();
            lx.skip_comment();
        } else {
            let name = lx.option_name()?;
            let value = lx.option_value()?;
            options.push(UnitOption {
                section: section.clone(),
                name,
                value,
            });
        }
    }
    Ok(options)
}

/// go-systemd refuses any stretch of 2048 bytes without `\r` or `\n`, because systemd
/// would truncate it. (It checks at each lexer step; checking every line up front gives
/// the same verdict and a line number.)
fn check_line_lengths(text: &str) -> Result<(), ParseError> {
    for (i, segment) in text.split('\n').enumerate() {
        if segment.split('\r').any(|s| s.len() >= LINE_MAX) {
            return Err(ParseError::LineTooLong { line: i + 1 });
        }
    }
    Ok(())
}

/// Whether a line is a comment: its first non-blank character is `#` or `;`.
fn is_comment_line(line: &str) -> bool {
    line.trim_start().starts_with(['#', ';'])
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// The rest of the current line without its line ending, and whether the file
    /// ended before a `\n` was found (go-systemd's `toEOL`).
    fn read_line(&mut self) -> (&'a str, bool) {
        let rest = &self.text[self.pos..];
        let (line, eof) = match rest.find('\n') {
            Some(i) => {
                self.pos += i + 1;
                self.line += 1;
                (&rest[..i], false)
            }
            None => {
                self.pos = self.text.len();
                (rest, true)
            }
        };
        (line.strip_suffix('\r').unwrap_or(line), eof)
    }

    /// Skips a comment whose first character was consumed. As in go-systemd, a comment
    /// ending in `\` (ignoring one trailing space) swallows the next line too.
    fn skip_comment(&mut self) {
        loop {
            let (line, eof) = self.read_line();
            let line = line.strip_suffix(' ').unwrap_or(line);
            if eof || !line.ends_with('\\') {
                return;
            }
        }
    }

    /// Reads `Name]` (the `[` is consumed) and checks the rest of the line is blank.
    /// Like go-systemd, the name is not trimmed and may span lines.
    fn section_header(&mut self) -> Result<String, ParseError> {
        let start_line = self.line;
        let rest = &self.text[self.pos..];
        let Some(end) = rest.find(']') else {
            return Err(ParseError::Syntax {
                line: start_line,
                msg: "unable to find end of section".to_string(),
            });
        };
        let name = &rest[..end];
        if name.contains(['\n', '\r']) {
            return Err(ParseError::Syntax {
                line: start_line,
                msg: "unable to find end of section on its line".to_string(),
            });
        }
        self.pos += end + 1;
        self.line += name.matches('\n').count();
        let header_line = self.line;
        let (garbage, _) = self.read_line();
        if !garbage.trim().is_empty() {
            return Err(ParseError::GarbageAfterSection {
                line: header_line,
                section: name.to_string(),
            });
        }
        Ok(name.to_string())
    }

    /// Reads the option name up to the first `=`; it must not contain a line break.
    fn option_name(&mut self) -> Result<String, ParseError> {
        let rest = &self.text[self.pos..];
        let line = self.line;
        match rest.find(['=', '\n', '\r']) {
            Some(i) if rest.as_bytes()[i] == b'=' => {
                self.pos += i + 1;
                Ok(rest[..i].trim().to_string())
            }
            Some(_) => Err(ParseError::Syntax {
                line,
                msg: "unexpected newline encountered while parsing option name".to_string(),
            }),
            None => Err(ParseError::Syntax {
                line,
                msg: "unexpected end of file while parsing option name".to_string(),
            }),
        }
    }

    /// Reads a value: the rest of the line, continued while lines end in `\`. The
    /// backslash and the newline stay in the value (fleet hashes them); a blank line
    /// ends the value and a trailing newline produced by it is kept.
    fn option_value(&mut self) -> Result<String, ParseError> {
        let mut partial = String::new();
        let mut continuing = false;
        loop {
            let line_no = self.line;
            let (line, eof) = self.read_line();
            if continuing && is_comment_line(line) {
                if eof {
                    break;
                }
                continue;
            }
            if line.trim().is_empty() {
                break;
            }
            partial.push_str(line);
            if (eof && line.ends_with('\\'))
                || (!line.ends_with('\\') && line.trim_end().ends_with('\\'))
            {
                return Err(ParseError::Syntax {
                    line: line_no,
                    msg: "value ends in a backslash that continues no line (remove the \
                          spaces after it to continue, or escape it)"
                        .to_string(),
                });
            }
            if !line.ends_with('\\') || eof {
                break;
            }
            partial.push('\n');
            continuing = true;
        }
        let trimmed = partial.trim();
        Ok(if partial.ends_with('\n') {
            format!("{trimmed}\n")
        } else {
            trimmed.to_string()
        })
    }
}
