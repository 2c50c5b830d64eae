//! systemd unit files: parsing as go-systemd does it, fleet's canonical form and hash.
//! (Interface fixed; implementation in progress.)

use std::fmt;

/// Largest unit file fleet accepts (etcd's default request limit is 1.5 MiB; leave room
/// for the key and the rest of the txn).
pub const MAX_UNIT_SIZE: usize = 1024 * 1024;

/// One `Name=Value` line of a unit file, with the section it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitOption {
    pub section: String,
    pub name: String,
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
    #[error("line {line}: found garbage after section name {section:?}")]
    GarbageAfterSection { line: usize, section: String },
    #[error("line {line}: line too long (max 2048 bytes)")]
    LineTooLong { line: usize },
    #[error("unit file too large ({size} bytes, max {max})")]
    TooLarge { size: usize, max: usize },
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
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
    /// Parses unit-file text.
    pub fn parse(_text: &str) -> Result<UnitFile, ParseError> {
        todo!("unit file parser")
    }

    /// Builds a unit file from options (as the API receives them).
    pub fn from_options(options: Vec<UnitOption>) -> UnitFile {
        UnitFile { options }
    }

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

    /// fleet's canonical serialization (what `cat` prints and what is hashed).
    pub fn canonical(&self) -> String {
        todo!("canonical form")
    }

    /// SHA-1 of the canonical form.
    pub fn hash(&self) -> UnitHash {
        todo!("hash")
    }
}
