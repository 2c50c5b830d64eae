//! `Global=true`: one copy on every machine whose metadata matches and where it
//! conflicts with nothing placed before it. Globals are placed first, in name order, so
//! of two conflicting globals the alphabetically first wins on a machine (fleet's agent
//! walk, §5.4.1), and non-global units see them (they count toward load and conflicts).
//! One placement per (unit, machine), so each agent reads only its own prefix.

use super::explain::{Tally, describe};
use super::feasible;
use super::pass::Pass;
use super::view::UnplaceReason;

impl Pass<'_> {
    pub(super) fn place_globals(&mut self) {
        for g in 0..self.snap.units.len() as u32 {
            let info = &self.snap.info[g as usize];
            if !(info.active && info.global) {
                continue;
            }
            let e = self.snap.eligible_of(g);
            // Former machines the metadata no longer admits.
            for &m in &self.original[g as usize] {
                if !e.mask[self.snap.class_of[m as usize] as usize] {
                    let why = describe(&self.snap, &self.prop, g, super::Reject::Metadata, m);
                    self.reasons.insert((g, m), UnplaceReason::Ineligible(why));
                }
            }
            let mut tally = Tally::default();
            let mut placed = false;
            for &c in &e.classes {
                for &m in &self.snap.class_members[c as usize] {
                    match feasible(&self.snap, &self.prop, g, m) {
                        Ok(()) => {
                            self.prop.add(&self.snap, g, m);
                            placed = true;
                        }
                        Err(r) => {
                            tally.reject(r, m);
                            if self.original[g as usize].contains(&m) {
                                let reason = if r == super::Reject::Drained {
                                    UnplaceReason::Drained
                                } else {
                                    UnplaceReason::Ineligible(describe(
                                        &self.snap, &self.prop, g, r, m,
                                    ))
                                };
                                self.reasons.insert((g, m), reason);
                            }
                        }
                    }
                }
            }
            if !placed {
                let why = match e.missing.as_deref() {
                    Some("") => "no machines in the cluster".to_string(),
                    Some(clause) => format!("no machine has {clause}"),
                    None => tally.sentence(&self.snap, &self.prop, g),
                };
                self.unplaceable.insert(g, why);
            }
        }
    }
}
