//! `MachineMetadata=`: AND across keys, OR within a key; a machine lacking a key never
//! matches.
//!
//! Machines with identical metadata form a class (Nomad's "computed class"); a
//! requirement is evaluated once per class and memoised for the whole pass, so checking
//! a machine is one array lookup, and the ranker only walks classes that qualify.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A metadata requirement: key → allowed values.
pub(super) type Requirement = BTreeMap<String, BTreeSet<String>>;

/// The classes a requirement admits, memoised per distinct requirement.
pub(super) struct Eligible {
    /// No requirement: every machine qualifies (the common case, kept allocation-free).
    pub all: bool,
    /// Admitted classes, ascending.
    pub classes: Vec<u32>,
    /// `mask[class]`: whether the class is admitted.
    pub mask: Vec<bool>,
    /// The requirement in words, for explanations (`region=west`).
    pub text: String,
    /// When no machine qualifies, the part of the requirement nobody has.
    pub missing: Option<String>,
}

/// Whether a machine's metadata satisfies a requirement.
pub(super) fn satisfies(meta: &BTreeMap<String, String>, req: &Requirement) -> bool {
    req.iter()
        .all(|(k, values)| meta.get(k).is_some_and(|v| values.contains(v)))
}

/// Memoises `Eligible` per distinct requirement; index 0 is "no requirement".
pub(super) struct MetadataIndex<'a> {
    pub(super) class_meta: Vec<&'a BTreeMap<String, String>>,
    by_pair: HashMap<(&'a str, &'a str), Vec<u32>>,
    memo: HashMap<&'a Requirement, u32>,
    pub(super) eligible: Vec<Eligible>,
}

impl<'a> MetadataIndex<'a> {
    pub(super) fn new(class_meta: Vec<&'a BTreeMap<String, String>>) -> Self {
        let mut by_pair: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        for (c, meta) in class_meta.iter().enumerate() {
            for (k, v) in meta.iter() {
                by_pair
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(c as u32);
            }
        }
        let n = class_meta.len();
        let all = Eligible {
            all: true,
            classes: (0..n as u32).collect(),
            mask: vec![true; n],
            text: String::new(),
            missing: (n == 0).then(String::new),
        };
        MetadataIndex {
            class_meta,
            by_pair,
            memo: HashMap::new(),
            eligible: vec![all],
        }
    }

    /// The memo index for a requirement, computing it the first time.
    pub(super) fn resolve(&mut self, req: &'a Requirement) -> u32 {
        if req.is_empty() {
            return 0;
        }
        if let Some(&i) = self.memo.get(req) {
            return i;
        }
        // Candidates from the most selective key, then the full check on each.
        let union = |key: &str, values: &BTreeSet<String>| -> Vec<u32> {
            let mut v: Vec<u32> = values
                .iter()
                .filter_map(|val| self.by_pair.get(&(key, val.as_str())))
                .flatten()
                .copied()
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut missing = None;
        let mut best: Option<Vec<u32>> = None;
        for (k, values) in req {
            let u = union(k, values);
            if u.is_empty() && missing.is_none() {
                missing = Some(key_text(k, values, false));
            }
            if best.as_ref().is_none_or(|b| u.len() < b.len()) {
                best = Some(u);
            }
        }
        let classes: Vec<u32> = best
            .unwrap_or_default()
            .into_iter()
            .filter(|&c| satisfies(self.class_meta[c as usize], req))
            .collect();
        let text = requirement_text(req);
        if classes.is_empty() && missing.is_none() {
            missing = Some(text.clone());
        }
        let mut mask = vec![false; self.class_meta.len()];
        for &c in &classes {
            mask[c as usize] = true;
        }
        let i = self.eligible.len() as u32;
        self.eligible.push(Eligible {
            all: false,
            classes,
            mask,
            text,
            missing,
        });
        self.memo.insert(req, i);
        i
    }
}

/// `diskType=SSD and (region=east or region=west)`.
pub(super) fn requirement_text(req: &Requirement) -> String {
    let several = req.len() > 1;
    req.iter()
        .map(|(k, values)| key_text(k, values, several))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn key_text(key: &str, values: &BTreeSet<String>, parens: bool) -> String {
    let alts: Vec<String> = values.iter().map(|v| format!("{key}={v}")).collect();
    match alts.len() {
        0 => format!("{key}=<nothing>"),
        1 => alts.concat(),
        _ if parens => format!("({})", alts.join(" or ")),
        _ => alts.join(" or "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &[&str])]) -> Requirement {
        pairs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn and_across_keys_or_within() {
        let r = req(&[("disk", &["ssd"]), ("region", &["east", "west"])]);
        let cases = [
            // every key present with an allowed value
            (meta(&[("disk", "ssd"), ("region", "west")]), true),
            // a disallowed value for one key
            (meta(&[("disk", "hdd"), ("region", "west")]), false),
            // a missing key never matches
            (meta(&[("region", "east")]), false),
            // extra keys are irrelevant
            (
                meta(&[("disk", "ssd"), ("region", "east"), ("x", "y")]),
                true,
            ),
        ];
        for (m, want) in cases {
            assert_eq!(satisfies(&m, &r), want, "{m:?}");
        }
        assert_eq!(
            requirement_text(&r),
            "disk=ssd and (region=east or region=west)"
        );
    }

    #[test]
    fn memoised_classes_and_missing_clause() {
        let a = meta(&[("region", "east")]);
        let b = meta(&[("region", "west"), ("disk", "ssd")]);
        let mut idx = MetadataIndex::new(vec![&a, &b]);
        let west = req(&[("region", &["west"])]);
        let i = idx.resolve(&west);
        assert_eq!(idx.resolve(&west), i);
        assert_eq!(idx.eligible[i as usize].classes, vec![1]);
        let north = req(&[("region", &["north"]), ("disk", &["ssd"])]);
        let j = idx.resolve(&north) as usize;
        assert!(idx.eligible[j].classes.is_empty());
        assert_eq!(idx.eligible[j].missing.as_deref(), Some("region=north"));
        let mixed = req(&[("region", &["east"]), ("disk", &["ssd"])]);
        let k = idx.resolve(&mixed) as usize;
        assert_eq!(
            idx.eligible[k].missing.as_deref(),
            Some("disk=ssd and region=east")
        );
    }
}
