//! systemd unit files: parsing as go-systemd does it, fleet's canonical form and hash.
//!
//! The canonical form is fleet's identity for a unit (its SHA-1 is the `HASH` column and
//! decides whether two bodies are "the same unit"), so it follows go-systemd's
//! `Serialize` byte for byte. Parsing rules and the few deliberate differences from
//! go-systemd are documented in the `lexer` module.

use std::collections::HashMap;
use std::fmt;

use sha1::{Digest, Sha1};

mod lexer;

/// Largest unit file fleet accepts (etcd's default request limit is 1.5 MiB; leave room
/// for the key and the rest of the txn).
pub const MAX_UNIT_SIZE: usize = 1024 * 1024;

/// Characters a unit file may not hold within a line: control characters but tab (a CR
/// is allowed only as the first half of a CRLF line end).
fn forbidden(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// One `Name=Value` line of a unit file, with the section it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitOption {
    /// Section name as written between the brackets (not trimmed, as go-systemd).
    pub section: String,
    /// Option name, trimmed.
    pub name: String,
    /// Value, trimmed; a continued value keeps its `\` + newline (fleet hashes them).
    pub value: String,
}

/// A parsed unit file: the ordered list of options (repeated keys kept, in order).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UnitFile {
    options: Vec<UnitOption>,
}

/// A unit file that cannot be parsed; carries the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Text after `]` on a section line (`[Unit] x`).
    #[error("line {line}: found garbage after section name {section:?}")]
    GarbageAfterSection { line: usize, section: String },
    /// A line systemd would silently truncate.
    #[error("line {line}: line too long (max 2048 bytes)")]
    LineTooLong { line: usize },
    /// Larger than [`MAX_UNIT_SIZE`]; would not fit in one etcd request.
    #[error("unit file too large ({size} bytes, max {max})")]
    TooLarge { size: usize, max: usize },
    /// Any other malformed line: an unclosed `[`, an option line without `=`.
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
    /// A NUL, an escape or another control character: systemd would cut the line at a
    /// NUL, and a terminal would obey an escape when `cat` prints it.
    #[error("line {line}: control character {} is not allowed in a unit file", codepoint(*.ch))]
    ControlChar { line: usize, ch: char },
    /// An option (from the API) that would be read back as something else once written
    /// as a file: a newline in a value smuggles in another option past the checks.
    #[error(
        "option {name:?} in [{section}] would not read back as written (newline or bracket in it)"
    )]
    NotPreserved { section: String, name: String },
}

/// Options as reading back yields them: grouped by section in order of first appearance,
/// names and values trimmed (trimming smuggles nothing in).
fn grouped(f: &UnitFile) -> Vec<(&str, &str, &str)> {
    let mut order: Vec<&str> = Vec::new();
    let mut v: Vec<(usize, &UnitOption)> = Vec::new();
    for o in &f.options {
        let i = match order.iter().position(|s| *s == o.section) {
            Some(i) => i,
            None => {
                order.push(&o.section);
                order.len() - 1
            }
        };
        v.push((i, o));
    }
    v.sort_by_key(|(i, _)| *i);
    v.into_iter()
        .map(|(_, o)| (o.section.as_str(), o.name.trim(), o.value.trim()))
        .collect()
}

fn codepoint(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// SHA-1 of a unit's canonical text: fleet's unit identity (`HASH` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitHash(pub [u8; 20]);

impl UnitHash {
    /// The 7 hex digits fleet shows in tables.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(7);
        s
    }
}

impl fmt::Display for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for UnitHash {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out)?;
        Ok(UnitHash(out))
    }
}

impl UnitFile {
    /// Parses unit-file text (fleetctl reads local files this way). Never panics; the
    /// first problem found is reported with its line.
    pub fn parse(text: &str) -> Result<UnitFile, ParseError> {
        if text.len() > MAX_UNIT_SIZE {
            return Err(ParseError::TooLarge {
                size: text.len(),
                max: MAX_UNIT_SIZE,
            });
        }
        if let Some((line, ch)) = text.split('\n').enumerate().find_map(|(i, l)| {
            // A CR is a line end only right before the LF; anywhere else systemd
            // would end the line there and go-systemd would not.
            let body = l.strip_suffix('\r').unwrap_or(l);
            body.chars().find(|&c| forbidden(c)).map(|c| (i + 1, c))
        }) {
            return Err(ParseError::ControlChar { line, ch });
        }
        lexer::lex(text).map(UnitFile::from_options)
    }

    /// Checks that options received as a list (API, etcd) would survive being written
    /// to disk and read back, as fleet's API does before accepting a unit: the
    /// line-length limit, which systemd would otherwise silently truncate, and that the
    /// file reads back as exactly these options, so no value can carry a second option
    /// (or section) past the `[X-Fleet]` checks.
    pub fn check(&self) -> Result<(), ParseError> {
        let back = UnitFile::parse(&self.canonical())?;
        if back.options.len() == self.options.len() && grouped(&back) == grouped(self) {
            return Ok(());
        }
        let bad = self
            .options
            .iter()
            .find(|o| {
                [&o.section, &o.name, &o.value]
                    .iter()
                    .any(|t| t.contains(['\n', '\r']))
                    || o.section.contains(['[', ']'])
                    || o.name.contains('=')
            })
            .or_else(|| self.options.first());
        Err(ParseError::NotPreserved {
            section: bad.map(|o| o.section.clone()).unwrap_or_default(),
            name: bad.map(|o| o.name.clone()).unwrap_or_default(),
        })
    }

    /// Builds a unit file from options (as the API receives them).
    pub fn from_options(options: Vec<UnitOption>) -> UnitFile {
        UnitFile { options }
    }

    /// All options in file order (sections interleaved as they were written).
    pub fn options(&self) -> &[UnitOption] {
        &self.options
    }

    /// Values of `name` in `section`, in file order.
    pub fn values<'a>(
        &'a self,
        section: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.options
            .iter()
            .filter(move |o| o.section == section && o.name == name)
            .map(|o| o.value.as_str())
    }

    /// Whether the file has a section of that name (e.g. `Install`).
    pub fn has_section(&self, section: &str) -> bool {
        self.options.iter().any(|o| o.section == section)
    }

    /// The first `Description=` of `[Unit]` (the `DESC` column).
    pub fn description(&self) -> Option<&str> {
        self.values("Unit", "Description").next()
    }

    /// fleet's canonical serialization (what `cat` prints, what the agent writes to
    /// disk and what is hashed): sections in order of first appearance, each
    /// `[Name]\n` then `Name=Value\n` per option in file order, one blank line between
    /// sections, no trailing blank line.
    pub fn canonical(&self) -> String {
        let mut order: Vec<&str> = Vec::new();
        let mut by_section: HashMap<&str, Vec<&UnitOption>> = HashMap::new();
        for opt in &self.options {
            by_section
                .entry(opt.section.as_str())
                .or_insert_with(|| {
                    order.push(opt.section.as_str());
                    Vec::new()
                })
                .push(opt);
        }
        let mut out = String::new();
        for (i, section) in order.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(section);
            out.push_str("]\n");
            for opt in by_section.get(section).into_iter().flatten() {
                out.push_str(&opt.name);
                out.push('=');
                out.push_str(&opt.value);
                out.push('\n');
            }
        }
        out
    }

    /// SHA-1 of the canonical form: equal hashes mean fleet treats two bodies as one.
    pub fn hash(&self) -> UnitHash {
        UnitHash(Sha1::digest(self.canonical().as_bytes()).into())
    }
}

#[cfg(test)]
mod tests;
