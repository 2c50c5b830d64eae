//! Unit-name globs for `Conflicts=` and `Replaces=`, with Go `path.Match` semantics.
//! (Interface fixed; implementation in progress.)

/// A compiled glob over unit names.
#[derive(Clone, Debug)]
pub struct UnitGlob {
    pattern: String,
}

impl PartialEq for UnitGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}
impl Eq for UnitGlob {}

impl UnitGlob {
    /// Compiles a pattern; a malformed pattern matches nothing (as Go's path.Match errors).
    pub fn new(pattern: &str) -> UnitGlob {
        UnitGlob {
            pattern: pattern.to_string(),
        }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the glob matches a unit name.
    pub fn matches(&self, _name: &str) -> bool {
        todo!("glob matching")
    }
}
