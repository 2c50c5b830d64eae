//! Namespaces of units: a unit belongs to exactly one, its name is unique within it.
//!
//! `default` is fleet's flat set of unit names, stored exactly as fleet stores them. A
//! unit `web@1.service` of namespace `a` is stored, scheduled and run under the
//! qualified name `a:web@1.service` (a valid fleet and systemd name), so every key
//! of a namespace sits under a prefix of its own (`unit/a:`, `job/a:`, `state/a:`,
//! `unplaced/a:`) and two namespaces' units never clash on a machine. Which qualified
//! names belong to a namespace is decided against the namespaces that exist
//! ([`Namespaces`]), so a default unit whose name merely contains `:` stays default
//! while no namespace of that name exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::UnitName;
use crate::unit::name::NameError;

/// Separates the namespace from the unit name in a qualified name.
pub const SEPARATOR: char = ':';
/// Longest namespace name (a DNS label is 63; short keeps qualified names short).
pub const MAX_NAMESPACE_LEN: usize = 40;

/// A valid namespace name: lowercase letters, digits and inner `-`, like a DNS label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

/// Why a string is not a namespace name, or a selector is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "invalid namespace {0:?}: use 1-{MAX_NAMESPACE_LEN} lowercase letters, digits and inner '-'"
    )]
    InvalidName(String),
    #[error("invalid selector {0:?}: expected key=value[,key=value...]")]
    InvalidSelector(String),
    #[error("unit name in namespace {namespace}: {error}")]
    Name { namespace: String, error: NameError },
}

impl Namespace {
    /// The name of the namespace fleet users are in without naming one.
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<Namespace, NamespaceError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAMESPACE_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Namespace(s.to_string()))
        } else {
            Err(NamespaceError::InvalidName(s.to_string()))
        }
    }

    /// The default namespace.
    pub fn default_ns() -> Namespace {
        Namespace(Self::DEFAULT.to_string())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name a unit of this namespace is stored and run under: unchanged in
    /// `default`, `<ns>:<name>` elsewhere (too long is an error, as for any name).
    pub fn qualify(&self, name: &UnitName) -> Result<UnitName, NamespaceError> {
        if self.is_default() {
            return Ok(name.clone());
        }
        UnitName::parse(&format!("{}{SEPARATOR}{}", self.0, name.as_str())).map_err(|error| {
            NamespaceError::Name {
                namespace: self.0.clone(),
                error,
            }
        })
    }

    /// The start of every qualified name of this namespace (`a:`); empty for default.
    pub fn name_prefix(&self) -> String {
        if self.is_default() {
            String::new()
        } else {
            format!("{}{SEPARATOR}", self.0)
        }
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::default_ns()
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The machines a namespace is bound to: every key must have one of its values
/// (`team=a,team=b,zone=x` is team ∈ {a, b} and zone = x), as `MachineMetadata=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(BTreeMap<String, BTreeSet<String>>);

impl Selector {
    /// Parses `key=value[,key=value...]`; the empty string selects every machine.
    pub fn parse(s: &str) -> Result<Selector, NamespaceError> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || NamespaceError::InvalidSelector(s.to_string());
            let (k, v) = part.split_once('=').ok_or_else(bad)?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err(bad());
            }
            out.entry(k.to_string()).or_default().insert(v.to_string());
        }
        Ok(Selector(out))
    }

    /// Whether it selects every machine.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a machine with `metadata` is one of the namespace's machines.
    pub fn matches(&self, metadata: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|(k, vs)| metadata.get(k).is_some_and(|v| vs.contains(v)))
    }
}

impl fmt::Display for Selector {
    /// The canonical form `parse` accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The namespaces that exist (besides `default`), with their machine selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    known: BTreeMap<Namespace, Selector>,
}

impl Namespaces {
    pub fn new(known: impl IntoIterator<Item = (Namespace, Selector)>) -> Namespaces {
        Namespaces {
            known: known.into_iter().filter(|(n, _)| !n.is_default()).collect(),
        }
    }

    /// Whether only `default` exists: then every name is a default name, as in fleet.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn contains(&self, ns: &Namespace) -> bool {
        ns.is_default() || self.known.contains_key(ns)
    }

    /// Every namespace, `default` first.
    pub fn all(&self) -> impl Iterator<Item = &Namespace> {
        static DEFAULT: std::sync::OnceLock<Namespace> = std::sync::OnceLock::new();
        std::iter::once(DEFAULT.get_or_init(Namespace::default_ns)).chain(self.known.keys())
    }

    /// The machines `ns` is bound to (`None`: all of them).
    pub fn selector(&self, ns: &Namespace) -> Option<&Selector> {
        self.known.get(ns).filter(|s| !s.is_empty())
    }

    /// Which namespace a stored name belongs to, and its name there.
    pub fn split(&self, stored: &UnitName) -> (Namespace, UnitName) {
        if let Some((ns, local)) = stored.as_str().split_once(SEPARATOR)
            && let Ok(ns) = Namespace::parse(ns)
            && self.known.contains_key(&ns)
            && let Ok(local) = UnitName::parse(local)
        {
            return (ns, local);
        }
        (Namespace::default_ns(), stored.clone())
    }

    /// The name in `ns` of a stored name, if it belongs to `ns`.
    pub fn local_in(&self, ns: &Namespace, stored: &UnitName) -> Option<UnitName> {
        let (n, local) = self.split(stored);
        (n == *ns).then_some(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    #[test]
    fn namespace_names() {
        for ok in ["a", "team-a", "x9", "default"] {
            assert!(Namespace::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a:b", "a.b", "a_b", &"x".repeat(41)] {
            assert!(Namespace::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualify_and_split_round_trip() {
        let a = Namespace::parse("a").unwrap();
        let nss = Namespaces::new([(a.clone(), Selector::default())]);
        let q = a.qualify(&name("web@1.service")).unwrap();
        assert_eq!(q.as_str(), "a:web@1.service");
        assert_eq!(nss.split(&q), (a.clone(), name("web@1.service")));
        assert_eq!(nss.local_in(&a, &q), Some(name("web@1.service")));
        assert_eq!(nss.local_in(&Namespace::default_ns(), &q), None);
        // Default names are unchanged, and a ':' names a namespace only if it exists.
        let d = Namespace::default_ns();
        assert_eq!(
            d.qualify(&name("web.service")).unwrap(),
            name("web.service")
        );
        assert_eq!(
            nss.split(&name("b:x.service")),
            (d.clone(), name("b:x.service"))
        );
        assert_eq!(
            Namespaces::default().split(&q),
            (d, name("a:web@1.service"))
        );
        assert!(
            a.qualify(&name(&format!("{}.service", "x".repeat(246))))
                .is_err()
        );
    }

    #[test]
    fn selectors() {
        let s = Selector::parse("team=a, team=b,zone=x").unwrap();
        assert_eq!(s.to_string(), "team=a,team=b,zone=x");
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&m(&[("team", "b"), ("zone", "x"), ("other", "y")])));
        assert!(!s.matches(&m(&[("team", "c"), ("zone", "x")])));
        assert!(!s.matches(&m(&[("team", "a")])));
        assert!(Selector::parse("").unwrap().is_empty());
        for bad in ["team", "=a", "team=", "a=b,c"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
