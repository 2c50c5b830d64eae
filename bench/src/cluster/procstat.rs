//! CPU and memory of this process (per thread group) and of etcd, from /proc, so the
//! figures split engine, agents and etcd without any profiler.

use std::collections::BTreeMap;

/// Clock ticks per second of /proc's CPU counters (USER_HZ: 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far, per thread name prefix (`fleet-engine`, `fleet-agents`,
/// anything else is `other`), and by the whole process.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes {
    pub by_group: BTreeMap<&'static str, f64>,
    pub process: f64,
}

impl CpuTimes {
    /// Seconds used since `earlier` by `group`.
    pub fn since(&self, earlier: &CpuTimes, group: &str) -> f64 {
        self.by_group.get(group).copied().unwrap_or(0.0)
            - earlier.by_group.get(group).copied().unwrap_or(0.0)
    }
}

/// The thread groups the benchmark names its runtimes after.
fn group(comm: &str) -> &'static str {
    if comm.starts_with("fleet-engine") {
        "engine"
    } else if comm.starts_with("fleet-agents") {
        "agents"
    } else {
        "other"
    }
}

/// (comm, user+system seconds) of one /proc `stat` file.
fn parse_stat(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / TICKS_PER_SECOND))
}

/// CPU seconds of this process's threads, grouped. Threads that already exited are
/// only in the process total.
pub fn own_cpu() -> CpuTimes {
    let mut out = CpuTimes::default();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, secs)) = parse_stat(&text) {
                *out.by_group.entry(group(&comm)).or_default() += secs;
            }
        }
    }
    out.process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t))
        .map_or(0.0, |(_, s)| s);
    out
}

/// CPU seconds of another process (etcd), 0 if unknown.
pub fn pid_cpu(pid: Option<u32>) -> f64 {
    pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .and_then(|t| parse_stat(&t))
        .map_or(0.0, |(_, s)| s)
}

/// Peak resident set (VmHWM) in MiB of `/proc/<who>/status`.
pub fn peak_rss_mib(who: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{who}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name() {
        let line = "42 (fleet-agents 0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let (comm, secs) = parse_stat(line).unwrap();
        assert_eq!(comm, "fleet-agents 0");
        assert!((secs - 3.0).abs() < 1e-9);
        assert_eq!(group(&comm), "agents");
    }
}
