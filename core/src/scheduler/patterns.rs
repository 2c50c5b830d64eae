//! `Conflicts=`/`Replaces=` globs, interned once per pass, and which of them each unit
//! name matches.
//!
//! Why: checking a unit against a machine by matching globs against every unit there
//! costs (units on machine × globs) glob matches per candidate machine. Instead each
//! name is matched once against all globs, and machines keep per-glob counters
//! (`proposed.rs`), so a conflict check is a few integer lookups.

use std::collections::HashMap;

use crate::unit::UnitGlob;

/// Index of an interned glob.
pub(super) type PatId = u32;

/// All distinct glob patterns of a pass, per namespace: a glob of one namespace only
/// ever matches names of that namespace (compared without the namespace part).
#[derive(Default)]
pub(super) struct Patterns<'a> {
    globs: Vec<&'a UnitGlob>,
    /// The namespace (index) each glob belongs to.
    namespace: Vec<u32>,
    ids: HashMap<(u32, &'a str), PatId>,
}

impl<'a> Patterns<'a> {
    pub(super) fn intern(&mut self, ns: u32, glob: &'a UnitGlob) -> PatId {
        if let Some(&id) = self.ids.get(&(ns, glob.pattern())) {
            return id;
        }
        let id = self.globs.len() as PatId;
        self.globs.push(glob);
        self.namespace.push(ns);
        self.ids.insert((ns, glob.pattern()), id);
        id
    }

    pub(super) fn len(&self) -> usize {
        self.globs.len()
    }

    /// A lookup structure for `matching`, built once all globs are interned.
    pub(super) fn index(&self) -> PrefixIndex<'a> {
        let mut by_prefix: HashMap<&'a str, Vec<PatId>> = HashMap::new();
        for (id, glob) in self.globs.iter().enumerate() {
            by_prefix
                .entry(literal_prefix(glob.pattern()))
                .or_default()
                .push(id as PatId);
        }
        let mut lens: Vec<usize> = by_prefix.keys().map(|p| p.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        PrefixIndex { by_prefix, lens }
    }

    /// The ids of the globs of namespace `ns` that match `name` (its name there), sorted.
    pub(super) fn matching(&self, index: &PrefixIndex<'_>, ns: u32, name: &str) -> Vec<PatId> {
        let mut out = Vec::new();
        for &len in &index.lens {
            if len > name.len() {
                break;
            }
            if !name.is_char_boundary(len) {
                continue;
            }
            if let Some(ids) = index.by_prefix.get(&name[..len]) {
                out.extend(ids.iter().copied().filter(|&id| {
                    self.namespace[id as usize] == ns && self.globs[id as usize].matches(name)
                }));
            }
        }
        out.sort_unstable();
        out
    }
}

/// Globs grouped by their literal prefix: a glob can only match names starting with it,
/// so a name is tested only against globs whose prefix is one of its own prefixes.
pub(super) struct PrefixIndex<'a> {
    by_prefix: HashMap<&'a str, Vec<PatId>>,
    lens: Vec<usize>,
}

/// The part of a pattern before its first metacharacter (Go `path.Match`: `* ? [ \`;
/// `{` too, to stay a safe filter whatever alternation support the matcher has).
fn literal_prefix(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '\\', '{'])
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// Whether two sorted id lists share an element.
pub(super) fn intersects(a: &[PatId], b: &[PatId]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().any(|x| large.binary_search(x).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("web@*.service"), "web@");
        assert_eq!(literal_prefix("db.service"), "db.service");
        assert_eq!(literal_prefix("*.service"), "");
        assert_eq!(literal_prefix("a\\*b"), "a");
        assert_eq!(literal_prefix("x[0-9]"), "x");
    }

    #[test]
    fn intersections() {
        assert!(intersects(&[1, 3, 5], &[5]));
        assert!(!intersects(&[1, 3, 5], &[2, 4]));
        assert!(!intersects(&[], &[2, 4]));
    }
}
