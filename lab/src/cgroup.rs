//! Per-machine cgroup subtrees.
//!
//! Each nspawn process must start in its own subtree of the `name=systemd` and unified
//! hierarchies; otherwise all machines share one `payload` cgroup and each machine's
//! systemd sees the others' units.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Hierarchy roots a machine needs a subtree in, on this host's cgroup layout.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()]; // pure cgroup v2
    }
    ["systemd", "unified"]
        .iter()
        .map(|h| root.join(h))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// Removes a cgroup directory and everything the machine's systemd made below it,
/// deepest first; retries briefly since cgroups empty a moment after their processes die.
pub fn remove_tree(dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if !dir.exists() {
            return true;
        }
        remove_depth_first(dir);
        if !dir.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn remove_depth_first(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_depth_first(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Every process in a cgroup tree (all of a lab's or a machine's processes).
pub fn processes(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(processes(&entry.path()));
            }
        }
    }
    pids
}

/// Removes the shared `fleet-lab` parent if no lab uses it any more.
pub fn remove_if_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}
