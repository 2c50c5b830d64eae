//! A real etcd for tests, benchmarks and labs.
//!
//! [`EtcdServer`] starts the `etcd` binary from Debian's `etcd-server` package
//! (`/usr/bin/etcd`, override with the `FLEET_ETCD_BIN` environment variable) on free
//! ports, with its data in a temporary directory, and kills and reaps it on drop, so a
//! panicking test never leaks a process. It is deliberately synchronous (std only): the
//! lab and the benchmarks use it outside any async runtime.

mod certs;
pub use certs::make_test_certs;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `etcd-server` package installs etcd.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";
/// Environment variable naming another etcd binary.
pub const ETCD_BIN_ENV: &str = "FLEET_ETCD_BIN";

/// How often etcd commits its backend under fleet at scale (etcd's own default is
/// 100 ms). etcd 3.4 copies every write not yet committed on each read, keep-alive
/// answer and write txn, so under a burst of writes that copy, and the garbage it
/// makes, took half of etcd's CPU; committing every 10 ms keeps it small. The lab and
/// the benchmark run etcd with it, and the README recommends it to operators.
pub const BACKEND_BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// [`BACKEND_BATCH_INTERVAL`] (or another interval) as etcd's flag.
pub fn backend_batch_interval_flag(every: Duration) -> String {
    format!("--backend-batch-interval={}ms", every.as_millis().max(1))
}

/// The Go garbage collector's target for etcd under fleet at scale (`GOGC`; Go's
/// default is 100: collect when the heap has doubled since the last collection).
/// etcd 3.4's live heap is pointer-heavy (its key index) and fleet's bursts make it
/// allocate fast, so collections took about a third of its CPU, and their assists
/// slowed the apply loop until lease renewals were refused. At 5,000 machines x
/// 100,000 units 400 cut etcd's CPU by more than half, for 2-3x its peak memory.
/// The lab and the benchmark run etcd with it, and the README recommends it together
/// with `GOMEMLIMIT` as a cap.
pub const ETCD_GOGC: u32 = 400;

/// How many times a start is retried when a picked port was taken meanwhile.
const PORT_CLASH_RETRIES: usize = 5;
/// How much of etcd's log an error message quotes.
const LOG_TAIL_LINES: usize = 15;

/// Why an etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(
        "cannot start etcd {bin}: {source} (install Debian's etcd-server package or set {ETCD_BIN_ENV})"
    )]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare etcd: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd exited during startup ({status}); last log lines:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("etcd did not become healthy within {timeout:?}; last log lines:\n{log_tail}")]
    NotReady { timeout: Duration, log_tail: String },
}

/// How to start an etcd. The defaults suit tests: loopback only, fast elections.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Addresses clients may use (e.g. loopback plus a lab bridge IP). All listen on the
    /// same port; the first one is what [`EtcdServer::client_url`] returns.
    pub listen_ips: Vec<IpAddr>,
    /// The etcd binary; `None` means `$FLEET_ETCD_BIN` or [`DEFAULT_ETCD_BIN`].
    pub bin: Option<PathBuf>,
    /// How long to wait for `/health` to report a leader.
    pub startup_timeout: Duration,
    /// Raft heartbeat; short so a single member elects itself at once.
    pub heartbeat: Duration,
    /// Raft election timeout (must be ≥ 5 heartbeats per etcd's rules of thumb).
    pub election_timeout: Duration,
    /// Extra command-line flags, e.g. `--max-txn-ops=256`.
    pub extra_args: Vec<String>,
    /// etcd's `GOGC` (see [`ETCD_GOGC`]); `None` is Go's default, whatever the
    /// caller's environment says.
    pub gogc: Option<u32>,
    /// Run inside this network namespace (`ip netns exec`), reached on `listen_ips`
    /// from outside. Its ports are then etcd's own (2379 client, 2380 peer, 2381
    /// metrics): a fresh namespace has them free, and the host cannot probe them.
    pub netns: Option<String>,
    /// Where the member's data directory is made (default: the system temp dir). A
    /// tmpfs makes fsync free: right for throwaway labs, whose write latency a shared
    /// disk's fsync would otherwise dominate (three members fsync every write).
    pub data_in: Option<PathBuf>,
    /// Serve clients over TLS with this certificate and key (`https://` client URLs);
    /// e.g. `server.{crt,key}` of [`make_test_certs`].
    pub client_tls: Option<(PathBuf, PathBuf)>,
    /// With [`EtcdConfig::client_tls`]: the CA clients' certificates must chain to
    /// (`--client-cert-auth`), and peers talk TLS too with the same certificate, which
    /// must then be valid for both server and client authentication.
    pub trusted_ca: Option<PathBuf>,
}

/// Ports of an etcd in a network namespace of its own.
const NETNS_PORTS: [u16; 3] = [2379, 2380, 2381];

/// One member of a cluster: its name and how it is started.
struct Member<'a> {
    name: String,
    config: &'a EtcdConfig,
    ports: [u16; 3],
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            listen_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            bin: None,
            startup_timeout: Duration::from_secs(20),
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(500),
            extra_args: Vec::new(),
            gogc: None,
            netns: None,
            data_in: None,
            client_tls: None,
            trusted_ca: None,
        }
    }
}

impl EtcdConfig {
    /// Also listen on `ip` (for clients in lab containers on a bridge).
    pub fn also_listen_on(mut self, ip: IpAddr) -> Self {
        self.listen_ips.push(ip);
        self
    }

    /// Starts an etcd with this configuration.
    pub fn start(&self) -> Result<EtcdServer, EtcdError> {
        EtcdServer::start_with(self)
    }

    fn bin(&self) -> PathBuf {
        self.bin.clone().unwrap_or_else(|| {
            std::env::var_os(ETCD_BIN_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
        })
    }
}

/// A running single-member etcd, killed and reaped on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    /// Member name (`--name`).
    name: String,
    ips: Vec<IpAddr>,
    /// `http` or `https` (with [`EtcdConfig::client_tls`]).
    scheme: &'static str,
    client_port: u16,
    metrics_port: u16,
    log_path: PathBuf,
    /// What started it, so [`EtcdServer::restart`] can start it again identically.
    command: (PathBuf, Vec<String>),
    startup_timeout: Duration,
    gogc: Option<u32>,
    // Dropped last: etcd must be dead before its data directory goes.
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts an etcd on free loopback ports with the default test configuration.
    pub fn start() -> Result<EtcdServer, EtcdError> {
        EtcdConfig::default().start()
    }

    /// Starts an etcd as `config` says, retrying with new ports if one was taken.
    pub fn start_with(config: &EtcdConfig) -> Result<EtcdServer, EtcdError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(config) {
                Err(EtcdError::Exited { log_tail, .. })
                    if attempt < PORT_CLASH_RETRIES
                        && log_tail.contains("address already in use") =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn try_start(config: &EtcdConfig) -> Result<EtcdServer, EtcdError> {
        let ips = listen_ips(config);
        let member = Member {
            name: "fleet-test".to_string(),
            config,
            ports: member_ports(config, ips[0])?,
        };
        let initial = member.peer_entry(ips[0]);
        let mut server = EtcdServer::prepare(&member, &initial, "new")?;
        server.spawn()?;
        Ok(server)
    }

    /// An unstarted member of the cluster `initial` (`name=peer-url,...`).
    fn prepare(member: &Member, initial: &str, state: &str) -> Result<EtcdServer, EtcdError> {
        let config = member.config;
        let ips = listen_ips(config);
        let [client_port, peer_port, metrics_port] = member.ports;
        let mut builder = tempfile::Builder::new();
        builder.prefix("fleet-etcd-");
        let dir = match &config.data_in {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        let log_path = dir.path().join("etcd.log");
        let scheme = if config.client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let urls = |scheme: &str, port: u16| {
            ips.iter()
                .map(|ip| format!("{scheme}://{}", SocketAddr::new(*ip, port)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let peer_url = format!(
            "{}://{}",
            peer_scheme(config),
            SocketAddr::new(ips[0], peer_port)
        );
        let mut args = vec![
            format!("--name={}", member.name),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={}", urls(scheme, client_port)),
            format!("--advertise-client-urls={}", urls(scheme, client_port)),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={initial}"),
            format!("--initial-cluster-state={state}"),
            format!("--listen-metrics-urls={}", urls("http", metrics_port)),
            format!("--heartbeat-interval={}", config.heartbeat.as_millis()),
            format!("--election-timeout={}", config.election_timeout.as_millis()),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
            "--log-level=warn".to_string(),
        ];
        if let Some((cert, key)) = &config.client_tls {
            args.push(format!("--cert-file={}", cert.display()));
            args.push(format!("--key-file={}", key.display()));
            if let Some(ca) = &config.trusted_ca {
                args.push("--client-cert-auth".to_string());
                args.push(format!("--trusted-ca-file={}", ca.display()));
                args.push(format!("--peer-cert-file={}", cert.display()));
                args.push(format!("--peer-key-file={}", key.display()));
                args.push("--peer-client-cert-auth".to_string());
                args.push(format!("--peer-trusted-ca-file={}", ca.display()));
            }
        }
        args.extend(config.extra_args.iter().cloned());
        let bin = config.bin();
        let command = match &config.netns {
            Some(ns) => {
                let mut wrapped = vec!["netns".to_string(), "exec".to_string(), ns.clone()];
                wrapped.push(bin.display().to_string());
                wrapped.extend(args);
                (PathBuf::from("ip"), wrapped)
            }
            None => (bin, args),
        };
        Ok(EtcdServer {
            child: None,
            name: member.name.clone(),
            ips,
            scheme,
            client_port,
            metrics_port,
            log_path,
            command,
            startup_timeout: config.startup_timeout,
            gogc: config.gogc,
            dir,
        })
    }

    /// Starts the process without waiting for it to be healthy (a cluster member
    /// cannot be healthy before a quorum of its peers runs).
    fn spawn_process(&mut self) -> Result<(), EtcdError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let (bin, args) = &self.command;
        let mut cmd = Command::new(bin);
        // Settings from the caller's environment (ETCD_*) would silently override flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        match self.gogc {
            Some(percent) => cmd.env("GOGC", percent.to_string()),
            None => cmd.env_remove("GOGC"),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().map_err(|source| EtcdError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the process (again) and waits until it is healthy.
    fn spawn(&mut self) -> Result<(), EtcdError> {
        self.spawn_process()?;
        self.wait_healthy(self.startup_timeout)
    }

    /// Kills etcd and starts it again with the same data, ports and flags (clients
    /// see their streams break and must resume).
    pub fn restart(&mut self) -> Result<(), EtcdError> {
        self.kill();
        self.spawn()
    }

    /// Polls `/health` on the metrics port until etcd has a leader. On failure the
    /// process is killed (by drop) and the error quotes its log.
    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), EtcdError> {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddr::new(self.ips[0], self.metrics_port);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(EtcdError::Exited {
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                });
            }
            if health_ok(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::NotReady {
                    timeout,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://IP:PORT` (`https` with TLS) for clients, on the first listen address.
    pub fn client_url(&self) -> String {
        let addr = SocketAddr::new(self.ips[0], self.client_port);
        format!("{}://{addr}", self.scheme)
    }

    /// One client URL per listen address.
    pub fn client_urls(&self) -> Vec<String> {
        self.ips
            .iter()
            .map(|ip| {
                format!(
                    "{}://{}",
                    self.scheme,
                    SocketAddr::new(*ip, self.client_port)
                )
            })
            .collect()
    }

    /// Turns on etcd's authentication with a `root` user of `password`. `tls` are
    /// etcdctl's TLS flags for a TLS etcd (`--cacert=…`, and `--cert=…`/`--key=…` when
    /// it requires client certificates). Panics with etcdctl's message if a step fails.
    pub fn enable_auth(&self, password: &str, tls: &[String]) {
        let root = format!("root:{password}");
        self.etcdctl(tls, &["user", "add", &root]);
        self.etcdctl(tls, &["user", "grant-role", "root", "root"]);
        self.etcdctl(tls, &["auth", "enable"]);
    }

    /// Runs `etcdctl` (Debian's etcd-client) against this etcd with the extra `flags`
    /// (TLS, `--user=…`) and `args`; panics with its message if it fails (test set-up).
    pub fn etcdctl(&self, flags: &[String], args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_url()))
            .args(flags)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl (apt-get install etcd-client): {e}"));
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where `/metrics` and `/health` are served (scraped by benchmarks).
    pub fn metrics_url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.ips[0], self.metrics_port))
    }

    /// The sum of the samples of metric `name` whose labels include each of `labels`
    /// (`key="value"`), from this member's `/metrics`; `None` when it does not answer.
    /// For tests that assert what etcd itself saw (watch streams opened, requests).
    pub fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let addr = SocketAddr::new(self.ips[0], self.metrics_port);
        let body = http_limited(addr, "GET", "/metrics", "", 16 << 20)?;
        let body = body.split_once("\r\n\r\n")?.1;
        let mut sum = None;
        for line in body.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name || !labels.iter().all(|l| rest.contains(l)) {
                continue;
            }
            if let Ok(v) = value.parse::<f64>() {
                sum = Some(sum.unwrap_or(0.0) + v);
            }
        }
        sum
    }

    /// The client port (the same on every listen address).
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The directory holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The member name etcd runs as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program and arguments that start this etcd (with its data and ports), so a
    /// process that outlives this handle (the lab's CLI) can start it again.
    pub fn command(&self) -> (&Path, &[String]) {
        (&self.command.0, &self.command.1)
    }

    /// Starts a killed or stopped member again with its data, and waits until it is
    /// healthy (which needs a quorum of its peers up).
    pub fn start_again(&mut self) -> Result<(), EtcdError> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    /// Reaps the process if it exited (killed from outside), so no zombie is left.
    pub fn reap(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(Some(_)))
        {
            self.child = None;
        }
    }

    /// Stops etcd as an operator would (SIGTERM, then waits); data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The id of the member this one believes is the raft leader, and its own id
    /// (from etcd's `/v3/maintenance/status`); `None` when it does not answer.
    pub fn raft_status(&self) -> Option<RaftStatus> {
        raft_status_at(SocketAddr::new(self.ips[0], self.client_port))
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines etcd logged, for error messages and failing tests.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Kills and reaps etcd now, so tests can check behaviour when etcd is unreachable.
    /// Idempotent; the data directory stays until drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the etcd member serving clients at `client` says of raft; `None` when it does
/// not answer (dead, stopped, cut off).
pub fn raft_status_at(client: SocketAddr) -> Option<RaftStatus> {
    let body = http(client, "POST", "/v3/maintenance/status", "{}")?;
    let field = |name: &str| -> Option<u64> {
        let at = body.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = body[at..].trim_start_matches('"');
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some(RaftStatus {
        member_id: field("member_id")?,
        leader_id: field("leader").unwrap_or(0),
    })
}

/// What a member says of raft: who it is and whom it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub member_id: u64,
    /// 0 while it knows no leader.
    pub leader_id: u64,
}

/// A real etcd cluster of several members, each a process with its own data, killed
/// and reaped on drop. Members can be killed, stopped and started one by one, to test
/// what clients see when a member (or the raft leader) goes away.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// `size` members on free loopback ports (`config.listen_ips`), all started and
    /// healthy.
    pub fn start(config: &EtcdConfig, size: usize) -> Result<EtcdCluster, EtcdError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ips = listen_ips(config);
            let members = (0..size.max(1))
                .map(|i| {
                    Ok(Member {
                        name: format!("m{i}"),
                        config,
                        ports: member_ports(config, ips[0])?,
                    })
                })
                .collect::<Result<Vec<_>, EtcdError>>()?;
            match Self::start_members(&members) {
                Err(EtcdError::Exited { log_tail, .. })
                    if attempt < PORT_CLASH_RETRIES
                        && log_tail.contains("address already in use") =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    /// One member per configuration (each in its own network namespace, say), named
    /// `m0`, `m1`, ...
    pub fn start_each(configs: &[EtcdConfig]) -> Result<EtcdCluster, EtcdError> {
        let members = configs
            .iter()
            .enumerate()
            .map(|(i, config)| {
                Ok(Member {
                    name: format!("m{i}"),
                    config,
                    ports: member_ports(config, listen_ips(config)[0])?,
                })
            })
            .collect::<Result<Vec<_>, EtcdError>>()?;
        Self::start_members(&members)
    }

    fn start_members(members: &[Member]) -> Result<EtcdCluster, EtcdError> {
        let initial = members
            .iter()
            .map(|m| m.peer_entry(listen_ips(m.config)[0]))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: members
                .iter()
                .map(|m| EtcdServer::prepare(m, &initial, "new"))
                .collect::<Result<_, _>>()?,
        };
        for m in &mut cluster.members {
            m.spawn_process()?;
        }
        for m in &mut cluster.members {
            m.wait_healthy(m.startup_timeout)?;
        }
        Ok(cluster)
    }

    /// The members, in order (`m0` first).
    pub fn members(&self) -> &[EtcdServer] {
        &self.members
    }

    /// One member, to kill, stop or start it.
    pub fn member_mut(&mut self, index: usize) -> Option<&mut EtcdServer> {
        self.members.get_mut(index)
    }

    /// Every member's first client URL, comma-separated: what `etcd_servers` takes.
    pub fn client_urls(&self) -> String {
        self.members
            .iter()
            .map(EtcdServer::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the raft leader, as the running members agree on it.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<Option<RaftStatus>> =
            self.members.iter().map(EtcdServer::raft_status).collect();
        let leader = statuses
            .iter()
            .flatten()
            .find(|s| s.leader_id != 0)?
            .leader_id;
        statuses
            .iter()
            .position(|s| s.is_some_and(|s| s.member_id == leader))
    }

    /// Takes the members out, to keep them running past this handle (the lab's CLI).
    pub fn into_members(self) -> Vec<EtcdServer> {
        self.members
    }
}

impl Member<'_> {
    fn peer_entry(&self, ip: IpAddr) -> String {
        format!(
            "{}={}://{}",
            self.name,
            peer_scheme(self.config),
            SocketAddr::new(ip, self.ports[1])
        )
    }
}

/// `https` when peers authenticate each other with certificates.
fn peer_scheme(config: &EtcdConfig) -> &'static str {
    if config.client_tls.is_some() && config.trusted_ca.is_some() {
        "https"
    } else {
        "http"
    }
}

fn listen_ips(config: &EtcdConfig) -> Vec<IpAddr> {
    if config.listen_ips.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        config.listen_ips.clone()
    }
}

/// Client, peer and metrics ports: free ones on `ip`, or etcd's own in a namespace.
fn member_ports(config: &EtcdConfig, ip: IpAddr) -> Result<[u16; 3], EtcdError> {
    match config.netns {
        Some(_) => Ok(NETNS_PORTS),
        None => Ok(free_ports(ip)?),
    }
}

/// Picks distinct free ports on `ip` by binding port 0 (all held until all are chosen).
fn free_ports<const N: usize>(ip: IpAddr) -> std::io::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind(SocketAddr::new(ip, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// One bounded HTTP/1.0 `GET /health`; true when etcd reports itself healthy.
fn health_ok(addr: SocketAddr) -> bool {
    http(addr, "GET", "/health", "").is_some_and(|body| body.contains("\"health\":\"true\""))
}

/// One bounded HTTP/1.0 request; the response (headers and body), if any came.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    http_limited(addr, method, path, body, 64 * 1024)
}

/// [`http`] reading at most `limit` bytes of the response.
fn http_limited(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    limit: u64,
) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    let _ = s.take(limit).read_to_string(&mut response);
    (!response.is_empty()).then_some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_dies_on_drop() {
        let etcd = EtcdServer::start().expect("etcd starts");
        assert!(etcd.client_url().starts_with("http://127.0.0.1:"));
        let metrics: SocketAddr = etcd.metrics_url()["http://".len()..].parse().unwrap();
        assert!(health_ok(metrics));
        let client: SocketAddr = etcd.client_url()["http://".len()..].parse().unwrap();
        drop(etcd);
        // Killed and reaped: nothing listens any more.
        assert!(TcpStream::connect_timeout(&client, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn runs_with_the_gogc_asked_for() {
        let environ = |etcd: &EtcdServer| {
            let pid = etcd.pid().expect("running");
            let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
            raw.split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|v| v.starts_with("GOGC="))
                .collect::<Vec<_>>()
        };
        let tuned = EtcdConfig {
            gogc: Some(ETCD_GOGC),
            ..EtcdConfig::default()
        };
        let etcd = tuned.start().expect("etcd starts");
        assert_eq!(environ(&etcd), [format!("GOGC={ETCD_GOGC}")]);
        let plain = EtcdServer::start().expect("etcd starts");
        assert_eq!(environ(&plain), Vec::<String>::new());
    }

    #[test]
    fn kill_makes_it_unreachable() {
        let mut etcd = EtcdServer::start().expect("etcd starts");
        let client: SocketAddr = etcd.client_url()["http://".len()..].parse().unwrap();
        etcd.kill();
        etcd.kill();
        assert!(etcd.pid().is_none());
        assert!(TcpStream::connect_timeout(&client, Duration::from_millis(200)).is_err());
    }

    #[test]
    fn restart_keeps_the_address() {
        let mut etcd = EtcdServer::start().expect("etcd starts");
        let url = etcd.client_url();
        let pid = etcd.pid();
        etcd.restart().expect("etcd restarts");
        assert_eq!(etcd.client_url(), url);
        assert_ne!(etcd.pid(), pid);
        let metrics: SocketAddr = etcd.metrics_url()["http://".len()..].parse().unwrap();
        assert!(health_ok(metrics));
    }

    /// Three members elect a leader; with the leader killed the others elect another,
    /// and the killed one comes back as a follower with its data.
    #[test]
    fn a_cluster_survives_its_leader() {
        let mut cluster = EtcdCluster::start(&EtcdConfig::default(), 3).expect("cluster starts");
        assert_eq!(cluster.members().len(), 3);
        assert_eq!(cluster.client_urls().split(',').count(), 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        let leader = loop {
            if let Some(l) = cluster.leader() {
                break l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(20));
        };
        cluster.member_mut(leader).unwrap().kill();
        let next = loop {
            match cluster.leader() {
                Some(l) if l != leader => break l,
                _ => assert!(Instant::now() < deadline, "no new leader"),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_ne!(next, leader);
        cluster
            .member_mut(leader)
            .unwrap()
            .start_again()
            .expect("rejoins");
        assert_eq!(
            cluster.leader(),
            Some(next),
            "the old leader rejoins as follower"
        );
        cluster.member_mut(next).unwrap().stop();
        assert!(cluster.members()[next].pid().is_none());
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let cfg = EtcdConfig {
            bin: Some(PathBuf::from("/nonexistent/etcd")),
            ..EtcdConfig::default()
        };
        let err = cfg.start().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/etcd"), "{err}");
        assert!(err.contains("etcd-server"), "{err}");
    }

    #[test]
    fn bad_flag_reports_log_tail() {
        let cfg = EtcdConfig {
            extra_args: vec!["--no-such-flag".into()],
            ..EtcdConfig::default()
        };
        let err = cfg.start().unwrap_err().to_string();
        assert!(err.contains("exited during startup"), "{err}");
    }
}
