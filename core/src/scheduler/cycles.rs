//! Cycles in the "replaces" graph, found once per snapshot (pure graph code).

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
