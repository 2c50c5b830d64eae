//! A degraded link for one machine: added latency on its way to etcd, and packet loss.
//!
//! These kernels have no `netem` and no NFQUEUE, so latency is a userspace relay: in
//! the machine's network namespace an nftables rule sends its connections to each etcd
//! member through a relay on the host (on the bridge), which holds every chunk for the
//! delay in each direction before passing it on. Loss is an nftables rule dropping that
//! share of the machine's packets, both ways. Both live in tables of their own, so
//! clearing them touches nothing else.
//!
//! A slowed link must not break connections, as a slow network does not: only a
//! connection's first packet is redirected (connections made before keep going direct),
//! and `restore` keeps both conntrack in the namespace (so relayed connections keep
//! their translation) and their relays (now without delay) until those connections end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
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
    clear_loss(netns);
    let rules = format!(
        "add table inet {LOSS_TABLE}\n\
         add chain inet {LOSS_TABLE} out {{ type filter hook output priority 0; }}\n\
         add chain inet {LOSS_TABLE} in {{ type filter hook input priority 0; }}\n\
         add rule inet {LOSS_TABLE} out numgen random mod 100 < {percent} drop\n\
         add rule inet {LOSS_TABLE} in numgen random mod 100 < {percent} drop\n"
    );
    nft(netns, &rules)
}

/// Sends the machine's new connections to `member:2379` to `relay` instead, for each
/// `(member, relay)`.
///
/// Only a SYN is redirected: a connection made before is never steered mid-stream to a
/// relay that does not know it (it keeps its direct path, as the README says).
///
/// Conntrack, and with it the translation of relayed connections, lasts only while a
/// rule needs it: the `track` chain's rule (never flushed) keeps it once the redirects
/// are gone, or `restore` would black-hole every relayed connection.
pub(crate) fn set_redirects(netns: &str, redirects: &[(Ipv4Addr, SocketAddr)]) -> Result<()> {
    let mut rules = format!(
        "add table ip {DELAY_TABLE}\n\
         add chain ip {DELAY_TABLE} track {{ type filter hook output priority 0; }}\n\
         flush chain ip {DELAY_TABLE} track\n\
         add rule ip {DELAY_TABLE} track ct state established counter\n\
         add chain ip {DELAY_TABLE} out {{ type nat hook output priority -100; }}\n\
         flush chain ip {DELAY_TABLE} out\n"
    );
    for (member, relay) in redirects {
        rules.push_str(&format!(
            "add rule ip {DELAY_TABLE} out ip daddr {member} tcp dport {ETCD_PORT} \
             tcp flags & (syn | ack) == syn dnat to {relay}\n"
        ));
    }
    nft(netns, &rules)
}

/// Ends the loss and the redirects of new connections in the machine's namespace.
///
/// The table stays, with its `track` rule: without a rule needing conntrack the kernel
/// stops translating the connections already relayed, whose packets would then go to
/// the member itself (measured: a 60 s stall, then a new connection).
pub(crate) fn clear(netns: &str) {
    clear_loss(netns);
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "nft",
            "flush",
            "chain",
            "ip",
            DELAY_TABLE,
            "out",
        ])
        .stderr(Stdio::null())
        .status();
}

fn clear_loss(netns: &str) {
    let _ = Command::new("ip")
        .args([
            "netns", "exec", netns, "nft", "delete", "table", "inet", LOSS_TABLE,
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
/// connection to `to`, holding each chunk for `delay` in each direction. On SIGTERM
/// (`restore`) it stops delaying and ends once its connections have: a restored link
/// cuts nothing. Ends anyway when `lab_dir` no longer exists (the lab is down).
pub fn run_relay(
    lab_dir: PathBuf,
    listen: SocketAddr,
    to: SocketAddr,
    delay: Duration,
) -> Result<()> {
    let restored = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&restored))
        .map_err(LabError::io("cannot handle SIGTERM"))?;
    let listener =
        TcpListener::bind(listen).map_err(LabError::io(format!("cannot listen on {listen}")))?;
    let addr = listener
        .local_addr()
        .map_err(LabError::io("cannot read the relay's address"))?;
    println!("{addr}");
    let _ = std::io::stdout().flush();
    let live = Arc::new(AtomicUsize::new(0));
    {
        let (restored, live) = (Arc::clone(&restored), Arc::clone(&live));
        std::thread::spawn(move || {
            let mut checked = Instant::now();
            loop {
                if restored.load(Ordering::SeqCst) && live.load(Ordering::SeqCst) == 0 {
                    std::process::exit(0);
                }
                if checked.elapsed() >= Duration::from_secs(1) {
                    if !lab_dir.exists() {
                        std::process::exit(0);
                    }
                    checked = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
    for conn in listener.incoming() {
        let Ok(inbound) = conn else { continue };
        let Ok(outbound) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            continue; // the client sees its connection closed, as with a dead member
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        live.fetch_add(1, Ordering::SeqCst);
        let open = Arc::new(Open(Arc::clone(&live)));
        for (from, into) in [(&inbound, &outbound), (&outbound, &inbound)] {
            if let (Ok(from), Ok(into)) = (from.try_clone(), into.try_clone()) {
                pump(from, into, delay, Arc::clone(&restored), Arc::clone(&open));
            }
        }
    }
    Ok(())
}

/// A relayed connection while any of its pump threads runs (the relay's count of open
/// connections drops when the last one ends).
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Copies `from` to `into`, each chunk `delay` after it arrived (order kept), or at
/// once when `restored`. End of stream is passed on as such (a half-close stays one).
fn pump(
    mut from: TcpStream,
    mut into: TcpStream,
    delay: Duration,
    restored: Arc<AtomicBool>,
    open: Arc<Open>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_open = Arc::clone(&open);
    std::thread::spawn(move || {
        let _open = reader_open;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
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
        let _open = open;
        while let Ok((due, chunk)) = rx.recv() {
            if !restored.load(Ordering::SeqCst) {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            if into.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = into.shutdown(std::net::Shutdown::Write);
    });
}
