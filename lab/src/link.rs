//! A degraded link for one machine: added latency on its way to etcd, and packet loss.
//!
//! These kernels have no `netem` and no NFQUEUE, so latency is a userspace relay: in
//! the machine's network namespace an nftables rule sends its connections to each etcd
//! member through a relay on the host (on the bridge), which holds every chunk for the
//! delay in each direction before passing it on. Loss is an nftables rule dropping that
//! share of the machine's packets, both ways. Both live in tables of their own, so
//! clearing them touches nothing else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};

/// The nftables tables fleet-lab owns in a machine's namespace.
const LOSS_TABLE: &str = "fleetlab_loss";
const DELAY_TABLE: &str = "fleetlab_delay";
/// The largest delay a relay adds (each way).
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// etcd's client port on every member.
const ETCD_PORT: u16 = 2379;

/// Drops `percent` (1..=100) of the machine's packets in and out.
pub(crate) fn set_loss(netns: &str, percent: u8) -> Result<()> {
    clear_table(netns, LOSS_TABLE);
    let rules = format!(
        "add table inet {LOSS_TABLE}\n\
         add chain inet {LOSS_TABLE} out {{ type filter hook output priority 0; }}\n\
         add chain inet {LOSS_TABLE} in {{ type filter hook input priority 0; }}\n\
         add rule inet {LOSS_TABLE} out numgen random mod 100 < {percent} drop\n\
         add rule inet {LOSS_TABLE} in numgen random mod 100 < {percent} drop\n"
    );
    nft(netns, &rules)
}

/// Sends the machine's connections to `member:2379` to `relay` instead, for each
/// `(member, relay)`.
pub(crate) fn set_redirects(netns: &str, redirects: &[(Ipv4Addr, SocketAddr)]) -> Result<()> {
    clear_table(netns, DELAY_TABLE);
    let mut rules = format!(
        "add table ip {DELAY_TABLE}\n\
         add chain ip {DELAY_TABLE} out {{ type nat hook output priority -100; }}\n"
    );
    for (member, relay) in redirects {
        rules.push_str(&format!(
            "add rule ip {DELAY_TABLE} out ip daddr {member} tcp dport {ETCD_PORT} dnat to {relay}\n"
        ));
    }
    nft(netns, &rules)
}

/// Removes fleet-lab's loss and delay rules from the machine's namespace.
pub(crate) fn clear(netns: &str) {
    clear_table(netns, LOSS_TABLE);
    clear_table(netns, DELAY_TABLE);
}

fn clear_table(netns: &str, table: &str) {
    let family = if table == LOSS_TABLE { "inet" } else { "ip" };
    let _ = Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "delete", "table", family, table,
        ])
        .stderr(Stdio::null())
        .status();
}

fn nft(netns: &str, rules: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LabError::io("cannot run nft (apt-get install nftables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .map_err(LabError::io("cannot write to nft"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(LabError::io("cannot run nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            cmd: format!("nft -f - in {netns}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Starts a relay process (`fleet-lab relay`) listening on `listen_ip` and forwarding
/// to `to` with `delay` each way; it lives until `lab_dir` is gone or it is killed.
/// Returns its pid and address.
pub(crate) fn spawn_relay(
    fleet_lab: &Path,
    lab_dir: &Path,
    listen_ip: Ipv4Addr,
    to: SocketAddr,
    delay: Duration,
) -> Result<(u32, SocketAddr)> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(fleet_lab)
        .arg("relay")
        .arg(format!("--lab-dir={}", lab_dir.display()))
        .arg(format!("--listen={listen_ip}:0"))
        .arg(format!("--to={to}"))
        .arg(format!("--delay-ms={}", delay.as_millis()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(LabError::io(format!("cannot run {}", fleet_lab.display())))?;
    let pid = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match line.trim().parse::<SocketAddr>() {
        Ok(addr) => Ok((pid, addr)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(LabError::Command {
                cmd: format!("{} relay --to={to}", fleet_lab.display()),
                detail: "the relay did not start".to_string(),
            })
        }
    }
}

/// The relay itself (`fleet-lab relay`): prints its address, then forwards every
/// connection to `to`, holding each chunk for `delay` in each direction. Ends when
/// `lab_dir` no longer exists (the lab is down), checked every second.
pub fn run_relay(
    lab_dir: PathBuf,
    listen: SocketAddr,
    to: SocketAddr,
    delay: Duration,
) -> Result<()> {
    let listener =
        TcpListener::bind(listen).map_err(LabError::io(format!("cannot listen on {listen}")))?;
    let addr = listener
        .local_addr()
        .map_err(LabError::io("cannot read the relay's address"))?;
    println!("{addr}");
    let _ = std::io::stdout().flush();
    std::thread::spawn(move || {
        while lab_dir.exists() {
            std::thread::sleep(Duration::from_secs(1));
        }
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(inbound) = conn else { continue };
        let Ok(outbound) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            continue; // the client sees its connection closed, as with a dead member
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        for (from, into) in [(&inbound, &outbound), (&outbound, &inbound)] {
            if let (Ok(from), Ok(into)) = (from.try_clone(), into.try_clone()) {
                pump(from, into, delay);
            }
        }
    }
    Ok(())
}

/// Copies `from` to `into`, each chunk `delay` after it arrived (order kept).
fn pump(mut from: TcpStream, mut into: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Read);
    });
    std::thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if into.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = into.shutdown(std::net::Shutdown::Write);
    });
}
