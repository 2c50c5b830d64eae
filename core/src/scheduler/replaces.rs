//! `Replaces=` (fleet §5.3.4): the replacer is placed like any unit (not steered towards
//! its victim); a unit it replaces that shares its machine is moved elsewhere, and may
//! not go to a machine holding a unit that replaces it. Global units are never
//! displaced. Replacement inside a cycle (`a` replaces `b` replaces `a`, or longer) is
//! ignored, as fleet ignores mutual replacement, so displacements follow an acyclic
//! graph and cannot loop; the cycle is reported as a note. A unit never displaces its
//! own `MachineOf=` targets (fleet rejects that at submit time; moving the target would
//! move the replacer with it, forever).

use super::Reject;
use super::patterns::intersects;
use super::proposed::Proposed;
use super::snapshot::{Peer, Snapshot};

/// Whether `r` displaces `x` when they share a machine.
pub(super) fn displaces(snap: &Snapshot<'_>, r: u32, x: u32) -> bool {
    let (ir, ix) = (&snap.info[r as usize], &snap.info[x as usize]);
    r != x
        && !ix.global
        && intersects(&ir.replaces, &ix.matched)
        && (ir.replace_cycle.is_none() || ir.replace_cycle != ix.replace_cycle)
        && !follows(snap, r, x)
}

/// Whether `unit` is on `target`'s `MachineOf=` chain (directly or through others).
fn follows(snap: &Snapshot<'_>, unit: u32, target: u32) -> bool {
    let mut seen = vec![unit];
    let mut todo = vec![unit];
    while let Some(u) = todo.pop() {
        for peer in &snap.info[u as usize].peers {
            if let Peer::Unit(p) = *peer {
                if p == target {
                    return true;
                }
                if !seen.contains(&p) {
                    seen.push(p);
                    todo.push(p);
                }
            }
        }
    }
    false
}

/// Scans the units on the machine only when a `Replaces=` is declared there (rare).
pub(super) fn check(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    machine: u32,
) -> Result<(), Reject> {
    if prop.replacers[machine as usize] > 0
        && let Some(&by) = prop.on[machine as usize]
            .iter()
            .find(|&&v| displaces(snap, v, unit))
    {
        return Err(Reject::ReplacedBy(by));
    }
    Ok(())
}

/// The units on `machine` that `unit` displaces, sorted.
pub(super) fn victims(snap: &Snapshot<'_>, prop: &Proposed, unit: u32, machine: u32) -> Vec<u32> {
    if snap.info[unit as usize].replaces.is_empty() {
        return Vec::new();
    }
    let mut v: Vec<u32> = prop.on[machine as usize]
        .iter()
        .copied()
        .filter(|&x| displaces(snap, unit, x))
        .collect();
    v.sort_unstable();
    v
}

/// Strongly connected components of the "replaces" graph (iterative Tarjan): for each
/// unit on a cycle, the id of its cycle.
pub(super) fn cycles(edges: &[Vec<u32>]) -> Vec<Option<u32>> {
    const NONE: u32 = u32::MAX;
    let n = edges.len();
    let (mut index, mut low) = (vec![NONE; n], vec![0u32; n]);
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut out = vec![None; n];
    let (mut next, mut comps) = (0u32, 0u32);
    for s in 0..n {
        if index[s] != NONE || edges[s].is_empty() {
            continue;
        }
        let mut call: Vec<(u32, usize)> = vec![(s as u32, 0)];
        index[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s as u32);
        on_stack[s] = true;
        while let Some(&(v, i)) = call.last() {
            let vu = v as usize;
            if let Some(&w) = edges[vu].get(i) {
                if let Some(top) = call.last_mut() {
                    top.1 += 1;
                }
                let wu = w as usize;
                if index[wu] == NONE {
                    index[wu] = next;
                    low[wu] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[wu] = true;
                    call.push((w, 0));
                } else if on_stack[wu] {
                    low[vu] = low[vu].min(index[wu]);
                }
                continue;
            }
            call.pop();
            if let Some(&(p, _)) = call.last() {
                low[p as usize] = low[p as usize].min(low[vu]);
            }
            if low[vu] == index[vu] {
                let mut members = Vec::new();
                while let Some(x) = stack.pop() {
                    on_stack[x as usize] = false;
                    members.push(x);
                    if x == v {
                        break;
                    }
                }
                if members.len() > 1 {
                    for x in members {
                        out[x as usize] = Some(comps);
                    }
                    comps += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cycles;

    #[test]
    fn cycles_found_chains_ignored() {
        // 0 -> 1 -> 2 -> 0 is a cycle; 3 -> 0 and 4 -> 5 are not.
        let edges = vec![vec![1], vec![2], vec![0], vec![0], vec![5], vec![]];
        let c = cycles(&edges);
        assert!(c[0].is_some() && c[0] == c[1] && c[1] == c[2]);
        assert_eq!(&c[3..], &[None, None, None]);
    }
}
