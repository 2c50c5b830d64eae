//! The indexed, immutable part of a pass: machines by id and class, units by name with
//! their rules resolved to indices. Built once per pass, never per unit.

use std::collections::{BTreeMap, HashMap};

use super::metadata::{Eligible, MetadataIndex};
use super::patterns::{PatId, Patterns};
use super::view::{ClusterView, UnitSpec};
use crate::{Machine, Namespace, Namespaces, Selector, TargetState};

/// A `MachineOf=` target, resolved.
#[derive(Clone, Copy, Debug)]
pub(super) enum Peer<'a> {
    Unit(u32),
    /// Names no known unit: it can never be placed.
    Unknown(&'a str),
}

/// A unit's rules as indices.
pub(super) struct UnitInfo<'a> {
    /// Target `loaded`/`launched` and not a template: it wants a machine.
    pub active: bool,
    pub global: bool,
    pub conflicts: Vec<PatId>,
    pub replaces: Vec<PatId>,
    /// Every interned glob (of any unit) that matches this unit's name, sorted.
    pub matched: Vec<PatId>,
    pub peers: Vec<Peer<'a>>,
    /// Index into the metadata memo.
    pub eligible: u32,
    /// The `Replaces=` cycle this unit is on: replacement inside it is ignored.
    pub replace_cycle: Option<u32>,
}

pub(super) struct Snapshot<'a> {
    /// Sorted by id and unique, so a machine index orders like its id (the tie-break).
    pub machines: Vec<&'a Machine>,
    pub machine_by_id: HashMap<&'a str, u32>,
    /// `MachineID=` accepts the full id or its 8-character short form.
    pub machine_by_short: HashMap<&'a str, Vec<u32>>,
    pub class_of: Vec<u32>,
    /// Per machine index: drained by an operator.
    pub drained: Vec<bool>,
    /// Members of each metadata class, ascending.
    pub class_members: Vec<Vec<u32>>,
    pub metadata: MetadataIndex<'a>,
    /// Sorted by name and unique.
    pub units: Vec<&'a UnitSpec>,
    pub unit_by_name: HashMap<&'a str, u32>,
    pub info: Vec<UnitInfo<'a>>,
    /// Units whose `MachineOf=` names this one: they move when it moves.
    pub followers: Vec<Vec<u32>>,
    /// Rules ignored for a unit, in words (a `Replaces=` cycle).
    pub notes: Vec<(u32, String)>,
    /// Per unit: index of its namespace (0 is `default`).
    pub ns_of: Vec<u32>,
    pub ns_names: Vec<Namespace>,
    pub ns_selectors: Vec<Selector>,
    /// Per namespace bound to a selector: whether it admits each metadata class.
    pub ns_admits: Vec<Option<Vec<bool>>>,
}

impl<'a> Snapshot<'a> {
    pub(super) fn build(view: &'a ClusterView, namespaces: &Namespaces) -> Snapshot<'a> {
        let mut machines: Vec<&Machine> = view.machines.iter().collect();
        machines.sort_by(|a, b| a.id.cmp(&b.id));
        machines.dedup_by(|a, b| a.id == b.id);
        let mut machine_by_id = HashMap::with_capacity(machines.len());
        let mut machine_by_short: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut class_ids: HashMap<&BTreeMap<String, String>, u32> = HashMap::new();
        let mut class_meta = Vec::new();
        let mut class_members: Vec<Vec<u32>> = Vec::new();
        let mut class_of = Vec::with_capacity(machines.len());
        for (i, m) in machines.iter().enumerate() {
            let i = i as u32;
            machine_by_id.insert(m.id.as_str(), i);
            machine_by_short.entry(m.id.short()).or_default().push(i);
            let c = *class_ids.entry(&m.metadata).or_insert_with(|| {
                class_meta.push(&m.metadata);
                class_members.push(Vec::new());
                (class_meta.len() - 1) as u32
            });
            class_members[c as usize].push(i);
            class_of.push(c);
        }
        let ns_names: Vec<Namespace> = namespaces.all().cloned().collect();
        let ns_selectors: Vec<Selector> = ns_names
            .iter()
            .map(|n| namespaces.selector(n).cloned().unwrap_or_default())
            .collect();
        let ns_admits = ns_selectors
            .iter()
            .map(|sel| {
                (!sel.is_empty()).then(|| class_meta.iter().map(|m| sel.matches(m)).collect())
            })
            .collect();
        let ns_index: HashMap<&Namespace, u32> = ns_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n, i as u32))
            .collect();
        let mut metadata = MetadataIndex::new(class_meta);

        let mut units: Vec<&UnitSpec> = view.units.iter().collect();
        units.sort_by(|a, b| a.name.cmp(&b.name));
        units.dedup_by(|a, b| a.name == b.name);
        let unit_by_name: HashMap<&str, u32> = units
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.as_str(), i as u32))
            .collect();

        // Each unit's namespace and its name there (what its globs are matched against).
        let split: Vec<(u32, Option<crate::UnitName>)> = units
            .iter()
            .map(|u| {
                if namespaces.is_empty() {
                    return (0, None);
                }
                let (ns, local) = namespaces.split(&u.name);
                let i = ns_index.get(&ns).copied().unwrap_or(0);
                (i, (i != 0).then_some(local))
            })
            .collect();
        let ns_of: Vec<u32> = split.iter().map(|(n, _)| *n).collect();
        let mut patterns = Patterns::default();
        let mut info: Vec<UnitInfo> = units
            .iter()
            .zip(&ns_of)
            .map(|(u, &ns)| {
                let r = &u.requirements;
                let active = u.target != TargetState::Inactive && !u.name.is_template();
                // `MachineOf=` names a unit of the same namespace.
                let peer = |p: &'a String| {
                    let found = if ns == 0 {
                        unit_by_name.get(p.as_str()).copied()
                    } else {
                        crate::UnitName::parse(p)
                            .ok()
                            .and_then(|p| ns_names[ns as usize].qualify(&p).ok())
                            .and_then(|q| unit_by_name.get(q.as_str()).copied())
                    };
                    match found {
                        Some(i) => Peer::Unit(i),
                        None => Peer::Unknown(p.as_str()),
                    }
                };
                UnitInfo {
                    active,
                    global: r.global,
                    conflicts: sorted(r.conflicts.iter().map(|g| patterns.intern(ns, g))),
                    replaces: sorted(r.replaces.iter().map(|g| patterns.intern(ns, g))),
                    matched: Vec::new(),
                    peers: r.machine_of.iter().map(peer).collect(),
                    eligible: if active {
                        metadata.resolve(&r.metadata)
                    } else {
                        0
                    },
                    replace_cycle: None,
                }
            })
            .collect();
        if patterns.len() > 0 {
            let index = patterns.index();
            for ((u, i), (ns, local)) in units.iter().zip(info.iter_mut()).zip(&split) {
                let name = local.as_ref().unwrap_or(&u.name);
                i.matched = patterns.matching(&index, *ns, name.as_str());
            }
        }
        let notes = mark_replace_cycles(&units, &mut info);
        let mut followers = vec![Vec::new(); units.len()];
        for (u, i) in info.iter().enumerate() {
            for p in &i.peers {
                if let Peer::Unit(p) = *p {
                    followers[p as usize].push(u as u32);
                }
            }
        }
        let drained = machines
            .iter()
            .map(|m| view.drained.contains(&m.id))
            .collect();
        Snapshot {
            drained,
            machines,
            machine_by_id,
            machine_by_short,
            class_of,
            class_members,
            metadata,
            units,
            unit_by_name,
            info,
            followers,
            notes,
            ns_of,
            ns_names,
            ns_selectors,
            ns_admits,
        }
    }

    pub(super) fn eligible_of(&self, unit: u32) -> &Eligible {
        &self.metadata.eligible[self.info[unit as usize].eligible as usize]
    }

    pub(super) fn unit_name(&self, unit: u32) -> &'a str {
        self.units[unit as usize].name.as_str()
    }

    /// The 8-character form users see in `list-machines`.
    pub(super) fn machine_short(&self, machine: u32) -> &'a str {
        self.machines[machine as usize].id.short()
    }
}

/// Finds `Replaces=` cycles (only units with `Replaces=` and their victims are looked
/// at) and marks their members; returns one note per member.
fn mark_replace_cycles(units: &[&UnitSpec], info: &mut [UnitInfo<'_>]) -> Vec<(u32, String)> {
    let replace_pats: std::collections::HashSet<PatId> = info
        .iter()
        .flat_map(|i| i.replaces.iter().copied())
        .collect();
    if replace_pats.is_empty() {
        return Vec::new();
    }
    let mut matching: HashMap<PatId, Vec<u32>> = HashMap::new();
    for (x, i) in info.iter().enumerate() {
        for p in i.matched.iter().filter(|p| replace_pats.contains(p)) {
            matching.entry(*p).or_default().push(x as u32);
        }
    }
    let edges: Vec<Vec<u32>> = info
        .iter()
        .enumerate()
        .map(|(r, i)| {
            let mut e: Vec<u32> = i
                .replaces
                .iter()
                .filter_map(|p| matching.get(p))
                .flatten()
                .copied()
                .filter(|&x| x as usize != r && !info[x as usize].global)
                .collect();
            e.sort_unstable();
            e.dedup();
            e
        })
        .collect();
    let cycles = super::cycles::cycles(&edges);
    let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (u, c) in cycles.iter().enumerate() {
        if let Some(c) = c {
            info[u].replace_cycle = Some(*c);
            members.entry(*c).or_default().push(u as u32);
        }
    }
    let mut notes = Vec::new();
    for ms in members.values() {
        let names: Vec<&str> = ms
            .iter()
            .map(|&u| units[u as usize].name.as_str())
            .collect();
        let text = format!(
            "Replaces= ignored between {}: they replace each other in a cycle",
            names.join(", ")
        );
        notes.extend(ms.iter().map(|&u| (u, text.clone())));
    }
    notes
}

fn sorted(ids: impl Iterator<Item = PatId>) -> Vec<PatId> {
    let mut v: Vec<PatId> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}
