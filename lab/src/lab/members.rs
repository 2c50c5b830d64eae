//! The lab's etcd members: their status and their faults, one member at a time.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{KILL_TIMEOUT, Lab};
use crate::error::{LabError, Result};
use crate::net;
use crate::state::EtcdMember;
use crate::sys;

impl Lab {
    /// The etcd members and what each says of itself (run state, raft leader, cut).
    pub fn etcd_members(&self) -> Vec<MemberStatus> {
        let members = self.state.etcd.as_ref().map_or(&[][..], |e| &e.members[..]);
        let raft: Vec<_> = members.iter().map(|m| member_probe(m.ip)).collect();
        members
            .iter()
            .zip(&raft)
            .map(|(m, r)| MemberStatus {
                name: m.name.clone(),
                ip: m.ip,
                running: m.pid.is_some_and(|p| member_process(p, m)),
                cut: net::link_is_down(&m.host_veth),
                answers: r.is_some(),
                leader: *r == Some(true),
                machine: m.machine.clone(),
            })
            .collect()
    }

    /// The member the others follow, if they agree on one.
    pub fn etcd_leader(&self) -> Option<String> {
        self.etcd_members()
            .into_iter()
            .find(|m| m.leader)
            .map(|m| m.name)
    }

    /// Hard loss of an etcd member: SIGKILL. Its data stays for `etcd_start`.
    pub fn etcd_kill(&mut self, member: &str) -> Result<()> {
        self.signal_member(member, "KILL")
    }

    /// An orderly stop of an etcd member (SIGTERM; it leaves raft cleanly).
    pub fn etcd_stop(&mut self, member: &str) -> Result<()> {
        self.signal_member(member, "TERM")
    }

    /// Starts a killed or stopped member again with its data, and waits (bounded) until
    /// it answers; it rejoins raft once a quorum runs.
    pub fn etcd_start(&mut self, member: &str) -> Result<()> {
        let index = self.member_index(member)?;
        self.spawn_member(index)?;
        self.wait_member_answers(index)
    }

    /// Starts every member that is not running, then waits (bounded) until each
    /// answers: after a full stop no member answers before a quorum of them runs.
    pub fn etcd_start_all(&mut self) -> Result<()> {
        let count = self.state.etcd.as_ref().map_or(0, |e| e.members.len());
        for index in 0..count {
            self.spawn_member(index)?;
        }
        for index in 0..count {
            self.wait_member_answers(index)?;
        }
        Ok(())
    }

    /// Starts member `index` with its data unless it runs.
    pub(super) fn spawn_member(&mut self, index: usize) -> Result<()> {
        let m = self.member(index).clone();
        if m.pid.is_some_and(|p| member_process(p, &m)) {
            return Ok(());
        }
        let (program, args) = m
            .command
            .split_first()
            .ok_or_else(|| LabError::NotRunning(format!("etcd member {}", m.name)))?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))
            .map_err(LabError::io(format!(
                "cannot open {}/etcd.log",
                m.dir.display()
            )))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(LabError::io(format!("cannot start etcd member {}", m.name)))?;
        let pid = child.id();
        self.etcd_children.push(child);
        if let Some(e) = self.state.etcd.as_mut() {
            e.members[index].pid = Some(pid);
        }
        self.save()?;
        Ok(())
    }

    fn wait_member_answers(&self, index: usize) -> Result<()> {
        let m = self.member(index);
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        while member_probe(m.ip).is_none() {
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("etcd member {}", m.name),
                    secs: ETCD_START_TIMEOUT.as_secs(),
                    detail: format!(" (log: {}/etcd.log)", m.dir.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Cuts an etcd member off the network (peers and clients), or ends that.
    pub fn etcd_cut(&mut self, member: &str, cut: bool) -> Result<()> {
        let index = self.member_index(member)?;
        net::set_link(&self.member(index).host_veth, !cut)
    }

    fn signal_member(&mut self, member: &str, signal: &str) -> Result<()> {
        let index = self.member_index(member)?;
        let m = self.member(index).clone();
        if let Some(pid) = m.pid.filter(|&p| member_process(p, &m)) {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), "--", &pid.to_string()])
                .status();
            let gone = |_: &()| !sys::alive(pid);
            let deadline = Instant::now() + KILL_TIMEOUT;
            while !gone(&()) && Instant::now() < deadline {
                self.reap_etcd_children();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.reap_etcd_children();
        Ok(())
    }

    /// Reaps members this process restarted that have exited.
    fn reap_etcd_children(&mut self) {
        self.etcd_children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        for handle in &mut self.etcd {
            handle.reap();
        }
    }

    fn member(&self, index: usize) -> &EtcdMember {
        &self
            .state
            .etcd
            .as_ref()
            .expect("member_index checked it")
            .members[index]
    }

    /// The etcd member machine `node` runs, if any.
    pub(super) fn member_of(&self, node: &str) -> Option<String> {
        self.state
            .etcd
            .as_ref()?
            .members
            .iter()
            .find(|m| m.machine.as_deref() == Some(node))
            .map(|m| m.name.clone())
    }

    pub(super) fn member_index(&self, member: &str) -> Result<usize> {
        let members = self.state.etcd.as_ref().map_or(&[][..], |e| &e.members[..]);
        members
            .iter()
            .position(|m| {
                m.name == member
                    || m.ip.to_string() == member
                    || m.machine.as_deref() == Some(member)
            })
            .ok_or_else(|| LabError::NoSuchMember {
                lab: self.name.to_string(),
                member: member.to_string(),
                members: members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Where lab etcd members keep their data (a tmpfs on Debian).
pub(super) const LAB_ETCD_DATA: &str = "/dev/shm";

/// etcd's client port inside a member's namespace.
pub(super) const ETCD_CLIENT_PORT: u16 = 2379;
/// How long a restarted member may take to answer.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// True when `pid` still is this member's etcd (not a recycled pid).
fn member_process(pid: u32, m: &EtcdMember) -> bool {
    sys::runs(pid, "etcd", &format!("--data-dir={}/*", m.dir.display()))
}

/// etcd's metrics port inside a member's namespace: plain HTTP even when clients and
/// peers talk TLS, so the lab can probe members without credentials.
const ETCD_METRICS_PORT: u16 = 2381;

/// What the member at `ip` says of itself: `None` when it does not answer (dead,
/// stopped, cut off), else whether it is the raft leader (with a leader known).
fn member_probe(ip: Ipv4Addr) -> Option<bool> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::new(IpAddr::V4(ip), ETCD_METRICS_PORT);
    let timeout = Duration::from_millis(500);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    let _ = s.take(4 << 20).read_to_string(&mut body);
    let gauge = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim() == "1")
    };
    let has_leader = gauge("etcd_server_has_leader")?;
    Some(has_leader && gauge("etcd_server_is_leader")?)
}

/// What `fleet-lab etcd status` shows of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub name: String,
    pub ip: std::net::Ipv4Addr,
    /// Its process runs (possibly cut off).
    pub running: bool,
    /// Its link is down.
    pub cut: bool,
    /// It answered a status request just now.
    pub answers: bool,
    /// The answering members follow it.
    pub leader: bool,
    /// The machine it runs in (`etcd = "per-machine"`).
    pub machine: Option<String>,
}

/// etcd member `i`'s host veth is `host_veth(MEMBER_VETH_BASE + i)`, clear of machines'.
pub(super) const MEMBER_VETH_BASE: usize = 250;
