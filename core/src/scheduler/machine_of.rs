//! `MachineOf=`: the unit runs where all its targets run, and follows them when they
//! move. Targets are decided first (dependency order); cycles are reported, never
//! walked twice.

use std::collections::HashMap;

use super::Reject;
use super::proposed::Proposed;
use super::snapshot::{Peer, Snapshot};

/// Every target must be on the machine in the proposed state.
pub(super) fn check(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    machine: u32,
) -> Result<(), Reject> {
    for peer in &snap.info[unit as usize].peers {
        match *peer {
            Peer::Unit(p) if prop.is_on(snap, p, machine) => {}
            Peer::Unit(p) => return Err(Reject::PeerElsewhere(p)),
            Peer::Unknown(_) => return Err(Reject::PeerUnknown),
        }
    }
    Ok(())
}

/// The machines holding every target (one, unless a target is global), ascending; or
/// why there is none.
pub(super) fn candidates(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
) -> Result<Vec<u32>, String> {
    let mut acc: Option<(Vec<u32>, &str)> = None;
    for peer in &snap.info[unit as usize].peers {
        let (name, here) = match *peer {
            Peer::Unknown(name) => (name, Vec::new()),
            Peer::Unit(p) => {
                let here = if snap.info[p as usize].global {
                    prop.global_on.get(&p).cloned().unwrap_or_default()
                } else {
                    prop.machine_of[p as usize].into_iter().collect()
                };
                (snap.unit_name(p), here)
            }
        };
        if here.is_empty() {
            return Err(format!("MachineOf target {name} is not placed"));
        }
        acc = Some(match acc {
            None => (here, name),
            Some((prev, first)) => {
                let both: Vec<u32> = prev.into_iter().filter(|m| here.contains(m)).collect();
                if both.is_empty() {
                    return Err(format!(
                        "MachineOf targets {first} and {name} are on different machines"
                    ));
                }
                (both, first)
            }
        });
    }
    Ok(acc.map(|(v, _)| v).unwrap_or_default())
}

/// The first target's name, for sentences.
pub(super) fn first_target<'a>(snap: &Snapshot<'a>, unit: u32) -> &'a str {
    match snap.info[unit as usize].peers.first() {
        Some(Peer::Unit(p)) => snap.unit_name(*p),
        Some(Peer::Unknown(name)) => name,
        None => "",
    }
}

/// Non-global units that want a machine, targets before followers (ties by name), and
/// the units on a `MachineOf` cycle with the cycle in words.
pub(super) fn order(snap: &Snapshot<'_>) -> (Vec<u32>, HashMap<u32, String>) {
    let n = snap.units.len();
    let wanted = |u: u32| {
        let i = &snap.info[u as usize];
        i.active && !i.global
    };
    // 0: not seen, 1: on the DFS stack, 2: done.
    let mut state = vec![0u8; n];
    let mut out = Vec::with_capacity(n);
    let mut cyclic: HashMap<u32, String> = HashMap::new();
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for root in 0..n as u32 {
        if !wanted(root) || state[root as usize] != 0 {
            continue;
        }
        state[root as usize] = 1;
        stack.push((root, 0));
        while let Some(&(u, next)) = stack.last() {
            let peers = &snap.info[u as usize].peers;
            if next == peers.len() {
                state[u as usize] = 2;
                out.push(u);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let Peer::Unit(p) = peers[next] else { continue };
            if !wanted(p) {
                continue;
            }
            match state[p as usize] {
                0 => {
                    state[p as usize] = 1;
                    stack.push((p, 0));
                }
                1 => {
                    let start = stack.iter().position(|&(x, _)| x == p).unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..]
                        .iter()
                        .map(|&(x, _)| snap.unit_name(x))
                        .collect();
                    names.push(snap.unit_name(p));
                    let text = format!("MachineOf cycle: {}", names.join(" -> "));
                    for &(x, _) in &stack[start..] {
                        cyclic.entry(x).or_insert_with(|| text.clone());
                    }
                }
                _ => {}
            }
        }
    }
    (out, cyclic)
}
