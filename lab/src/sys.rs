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

/// A process's arguments as the kernel has them (argv[0] first).
pub fn argv(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// The file name of the program a process runs, from its executable (`/proc/PID/exe`),
/// which the process cannot fake by renaming itself or choosing its arguments.
pub fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// True when `pid` runs `program` and one of its arguments is `arg` (whole, or `arg`
/// as a prefix when it ends with `*`). What a process is, not what its command line
/// happens to contain: `grep /run/netns/flx-` or a look-alike name is never matched.
pub fn runs(pid: u32, program: &str, arg: &str) -> bool {
    let matches = |a: &String| match arg.strip_suffix('*') {
        Some(prefix) => a.starts_with(prefix),
        None => a == arg,
    };
    exe_name(pid).is_some_and(|e| e == program)
        && argv(pid).is_some_and(|args| args.iter().skip(1).any(matches))
}

/// Every pid (but ours) that [`runs`] `program` with `arg` (the fallback when a
/// recorded pid is lost).
pub fn pids_running(program: &str, arg: &str) -> Vec<u32> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|&pid| pid != me && runs(pid, program, arg))
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

/// Sends SIGTERM (through kill(1), as [`sigkill`]).
pub fn sigterm(pid: u32) {
    let _ = output("kill", &["-TERM", &pid.to_string()]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    struct Reaped(Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A process is matched by its executable and a whole argument, never by text that
    /// merely appears in its command line.
    #[test]
    fn processes_are_found_by_what_they_run() {
        let real = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
        // Calls itself systemd-nspawn with a lab's argument (its argv[0], all one
        // command line to `ps`), but runs sleep.
        let fake = Reaped(
            Command::new("bash")
                .args([
                    "-c",
                    "exec -a 'systemd-nspawn --network-namespace-path=/run/netns/flx-n1' sleep 30",
                ])
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // exec sets the new executable a moment before the new arguments: wait for both.
        while exe_name(fake.0.id()).as_deref() != Some("sleep")
            || !cmdline(fake.0.id()).is_some_and(|c| c.contains("systemd-nspawn --network"))
        {
            assert!(std::time::Instant::now() < deadline, "bash did not exec");
            std::thread::yield_now();
        }
        assert!(runs(real.0.id(), "sleep", "30"));
        assert!(!runs(real.0.id(), "sleep", "3"), "arguments match whole");
        assert!(runs(real.0.id(), "sleep", "3*"), "or by an explicit prefix");
        let needle = "--network-namespace-path=/run/netns/flx-*";
        assert!(!runs(fake.0.id(), "systemd-nspawn", needle));
        assert!(!pids_running("systemd-nspawn", needle).contains(&fake.0.id()));
        assert!(
            !runs(fake.0.id(), "sleep", needle),
            "argv[0] is no argument"
        );
    }
}
