//! Small host helpers: running tools, finding and killing processes, locks.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// Runs a host tool to completion, turning a non-zero exit into an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = output(program, args)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs a host tool and returns its output whatever its exit status.
pub fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(LabError::io(format!("cannot run {program}")))
}

/// True when the effective user is root (read from /proc: no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// A process's command line with NULs turned into spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Every pid on the host.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose command line contains `needle` (the fallback when a recorded pid is lost).
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|&pid| pid != me && cmdline(pid).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// The container's PID 1: the child of the nspawn process that is pid 1 in its own namespace.
pub fn container_leader(nspawn_pid: u32) -> Option<u32> {
    pids().into_iter().find(|&pid| {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return false;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_string())
        };
        field("PPid:").is_some_and(|p| p == nspawn_pid.to_string())
            && field("NSpid:").is_some_and(|ns| ns.split_whitespace().last() == Some("1"))
    })
}

/// Sends SIGKILL (through kill(1), to stay free of unsafe code).
pub fn sigkill(pid: u32) {
    let _ = output("kill", &["-KILL", &pid.to_string()]);
}

/// Waits until none of `pids` is alive, up to `timeout`; true if they all went.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An exclusive lock held until dropped (flock on a file), so parallel labs and
/// tests do not build the same image or pick the same subnet twice.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Blocks until the lock on `path` is ours.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(LabError::io(format!("cannot open lock {}", path.display())))?;
        file.lock()
            .map_err(LabError::io(format!("cannot lock {}", path.display())))?;
        Ok(FileLock(file))
    }
}

/// The last lines of a log file, to put in an error message.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
