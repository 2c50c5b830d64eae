//! A running lab: `up`, the machine operations, and teardown.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fleet_testkit::{EtcdCluster, EtcdConfig, EtcdServer};

use crate::certs::{self, Ca, Subject};
use crate::cgroup;
use crate::config::{ClusterConfig, EtcdPlacement, MachineSpec};
use crate::error::{LabError, Result};
use crate::link;
use crate::names::{LabName, RUN_DIR};
use crate::net::{self, Subnet};
use crate::rootfs::{self, CACHE_DIR, ImageSpec};
use crate::secure::{self, EtcdAdmin};
use crate::state::{EtcdMember, EtcdState, LabState, MachineState, running_labs};
use crate::sys::{self, FileLock};

mod members;
pub use members::MemberStatus;
use members::{ETCD_CLIENT_PORT, LAB_ETCD_DATA, MEMBER_VETH_BASE};

/// Where the fleet binaries appear inside every machine.
pub const FLEET_DIR_IN_MACHINE: &str = "/opt/fleet";
/// The TCP port of the fleet API in every machine (`fleetctl --endpoint http://<ip>:49153`).
pub const API_PORT: u16 = 49153;
/// Where a secure lab's machines find their CA, certificate and key.
pub const SSL_DIR_IN_MACHINE: &str = "/etc/fleet/ssl";
/// Where a secure lab's machines find etcdctl's identity for their units
/// (`services.env`, to use as `EnvironmentFile=-/etc/fleet-lab/services.env`).
pub const LAB_DIR_IN_MACHINE: &str = "/etc/fleet-lab";
/// PATH of commands run inside machines (includes the fleet binaries).
const MACHINE_PATH: &str =
    "/opt/fleet:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long one `systemctl is-system-running` probe may take.
const PROBE_TIMEOUT_SECS: &str = "5";
/// How long a killed machine may take to go away before we give up on it.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How to bring a lab up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Host fleetd binary, bind-mounted read-only into every machine.
    pub fleetd: PathBuf,
    /// Host fleetctl binary, bind-mounted too when present.
    pub fleetctl: Option<PathBuf>,
    /// Image cache directory.
    pub cache_dir: PathBuf,
    /// Debian mirror for building the image (`None`: `FLEET_LAB_MIRROR` or Debian's).
    pub mirror: Option<String>,
    /// How long every machine may take to reach systemd "running".
    pub boot_timeout: Duration,
    /// Let machines and etcd outlive this process (the CLI); otherwise they are children
    /// torn down when the [`Lab`] drops (tests).
    pub detach: bool,
}

impl UpOptions {
    /// Options with the fleet binaries found in `dir` (a cargo target dir, say).
    pub fn with_binaries_in(dir: &Path) -> Self {
        let fleetctl = dir.join("fleetctl");
        UpOptions {
            fleetd: dir.join("fleetd"),
            fleetctl: fleetctl.exists().then_some(fleetctl),
            cache_dir: PathBuf::from(CACHE_DIR),
            mirror: None,
            boot_timeout: Duration::from_secs(60),
            detach: false,
        }
    }
}

/// What `up` is doing, for progress displays.
#[derive(Clone, Debug)]
pub enum LabEvent {
    /// The image is not cached: debootstrap runs (a minute or two).
    BuildingImage(PathBuf),
    ImageReady(PathBuf),
    EtcdReady {
        url: String,
    },
    MachineStarting {
        name: String,
        ip: std::net::Ipv4Addr,
    },
    MachineRunning {
        name: String,
        secs: f64,
    },
}

/// A running lab. Dropping it tears the lab down (unless detached).
pub struct Lab {
    name: LabName,
    state: LabState,
    children: BTreeMap<String, Child>,
    /// The members this process started (none when attached): killed and reaped on drop.
    etcd: Vec<EtcdServer>,
    /// Members this process started again (`etcd_start`), reaped as they exit.
    etcd_children: Vec<Child>,
    detach: bool,
    torn_down: bool,
}

impl Lab {
    /// Builds the lab: image (cached), bridge, etcd, one container machine per spec,
    /// waiting until each machine's systemd runs. On failure nothing is left behind.
    pub fn up(
        config: &ClusterConfig,
        opts: &UpOptions,
        events: &mut dyn FnMut(LabEvent),
    ) -> Result<Lab> {
        if !sys::is_root() {
            return Err(LabError::NotRoot);
        }
        config.validate()?;
        let name = config.lab_name()?;
        check_binary(
            &opts.fleetd,
            "build it with `cargo build -p fleetd` or pass --fleetd",
        )?;
        let fleetctl = opts.fleetctl.clone().filter(|p| p.exists());
        let spec = ImageSpec::new(&config.suite, config.extra_packages());
        let rootfs = rootfs::ensure(&opts.cache_dir, &spec, opts.mirror.as_deref(), &mut |p| {
            events(LabEvent::BuildingImage(p.to_path_buf()))
        })?;
        events(LabEvent::ImageReady(rootfs.clone()));

        let state = LabState {
            name: name.to_string(),
            subnet: None,
            bridge: None,
            etcd: None,
            etcd_key_prefix: config.etcd_key_prefix.clone(),
            agent_ttl: config.agent_ttl.clone(),
            engine_lease_ttl: config.engine_lease_ttl.clone(),
            rootfs,
            fleetd: opts.fleetd.clone(),
            fleetctl,
            cgroups: Vec::new(),
            machines: Vec::new(),
            security: None,
        };
        let mut lab = Lab {
            name: name.clone(),
            state,
            children: BTreeMap::new(),
            etcd: Vec::new(),
            etcd_children: Vec::new(),
            detach: opts.detach,
            torn_down: false,
        };
        {
            // Name and subnet are claimed under one host-wide lock, so parallel labs differ.
            let _lock = FileLock::acquire(&Path::new(RUN_DIR).join(".lock"))?;
            if name.state_dir().exists()
                || !net::netns_with_prefix(&name.netns_prefix()).is_empty()
                || !net::links_with_prefix(&name.bridge()).is_empty()
            {
                lab.torn_down = true; // not ours: never tear down someone else's lab
                return Err(LabError::AlreadyRunning(name.to_string()));
            }
            let dir = name.state_dir();
            std::fs::create_dir_all(&dir)
                .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
            if let Err(e) = lab.claim_network() {
                let _ = lab.down();
                return Err(e);
            }
        }
        if let Err(e) = lab.build(config, opts, events) {
            let _ = lab.down();
            return Err(e);
        }
        Ok(lab)
    }

    /// Picks a free subnet and creates the bridge (recorded first, so teardown finds it).
    fn claim_network(&mut self) -> Result<()> {
        let taken: Vec<Subnet> = running_labs()
            .iter()
            .filter(|n| *n != self.name.as_str())
            .filter_map(|n| LabName::new(n).ok())
            .filter_map(|n| LabState::load(&n).ok().flatten()?.subnet)
            .collect();
        let subnet = net::pick_subnet(&taken)?;
        self.state.subnet = Some(subnet);
        self.state.bridge = Some(self.name.bridge());
        self.save()?;
        net::create_bridge(&self.name.bridge(), subnet)
    }

    fn build(
        &mut self,
        config: &ClusterConfig,
        opts: &UpOptions,
        events: &mut dyn FnMut(LabEvent),
    ) -> Result<()> {
        let subnet = self.subnet()?;
        // A secure lab's CA issues every certificate below.
        let ca = if config.secure {
            Some(Ca::create(&self.pki_dir(), self.name.as_str())?)
        } else {
            None
        };
        self.state.cgroups = cgroup::hierarchies()
            .into_iter()
            .map(|h| h.join(self.name.cgroup_rel()))
            .collect();
        self.save()?;
        let specs = config.machines();
        let per_machine = config.etcd == EtcdPlacement::PerMachine;
        if per_machine {
            // Members live in the machines' network namespaces: made first.
            for (index, spec) in specs.iter().enumerate() {
                self.record_machine(index, spec)?;
            }
        }
        // etcd: each member in a netns of its own on the bridge, so it can be cut off:
        // its own, or (per-machine) its machine's.
        let mut members = Vec::new();
        let mut configs = Vec::new();
        let count = if per_machine {
            specs.len()
        } else {
            config.etcd_members
        };
        for i in 0..count {
            let (netns, host_veth, ip, machine) = if per_machine {
                let m = &self.state.machines[i];
                (
                    m.netns.clone().unwrap_or_default(),
                    m.host_veth.clone().unwrap_or_default(),
                    m.ip,
                    Some(m.name.clone()),
                )
            } else {
                let netns = self.name.netns(&format!("etcd{i}"));
                let host_veth = self.name.host_veth(MEMBER_VETH_BASE + i);
                let ip = subnet.member_ip(i);
                net::create_machine_net(&netns, &host_veth, &self.name.bridge(), subnet, ip)?;
                (netns, host_veth, ip, None)
            };
            // A member's certificate serves clients and its peers, and is its client
            // certificate towards the peers.
            let tls = match &ca {
                Some(ca) => {
                    let id = ca.issue(&Subject {
                        stem: &format!("etcd-m{i}"),
                        common_name: &format!("m{i}"),
                        organization: None,
                        ips: vec![IpAddr::V4(ip)],
                        dns: std::iter::once(format!("m{i}"))
                            .chain(machine.clone())
                            .collect(),
                    })?;
                    Some((id.cert, id.key))
                }
                None => None,
            };
            configs.push(EtcdConfig {
                trusted_ca: ca.as_ref().map(Ca::cert),
                client_tls: tls,
                listen_ips: vec![IpAddr::V4(ip)],
                netns: Some(netns.clone()),
                // A lab is throwaway: its etcd data lives in memory where there is a
                // tmpfs, so three members' fsyncs do not queue on the host's disk.
                data_in: Some(PathBuf::from(LAB_ETCD_DATA)).filter(|p| p.is_dir()),
                extra_args: vec![fleet_testkit::backend_batch_interval_flag(
                    fleet_testkit::BACKEND_BATCH_INTERVAL,
                )],
                gogc: Some(fleet_testkit::ETCD_GOGC),
                ..EtcdConfig::default()
            });
            members.push((netns, host_veth, ip, machine));
        }
        let cluster = EtcdCluster::start_each(&configs)?;
        let url = cluster.client_urls();
        self.state.etcd = Some(EtcdState {
            local_url: url.clone(),
            bridge_url: url.clone(),
            members: cluster
                .members()
                .iter()
                .zip(members)
                .map(|(m, (netns, host_veth, ip, machine))| {
                    let (bin, args) = m.command();
                    EtcdMember {
                        name: m.name().to_string(),
                        ip,
                        netns,
                        host_veth,
                        pid: m.pid(),
                        dir: m.dir().to_path_buf(),
                        command: std::iter::once(bin.display().to_string())
                            .chain(args.iter().cloned())
                            .collect(),
                        machine,
                    }
                })
                .collect(),
        });
        self.etcd = cluster.into_members();
        self.save()?;
        if let Some(ca) = &ca {
            let admin = ca.issue(&secure::admin_subject())?;
            let mut security = secure::enable_auth(
                ca,
                &self.name.state_dir(),
                &url,
                &admin,
                &self.state.etcd_key_prefix,
            )?;
            // The units the machines run (units/ reads etcd) get an identity of their
            // own, never fleetd's.
            let services = ca.issue(&Subject {
                stem: "services",
                common_name: secure::SERVICES_USER,
                organization: None,
                ips: Vec::new(),
                dns: Vec::new(),
            })?;
            let env = self.name.state_dir().join("services.env");
            secure::add_services_user(
                &EtcdAdmin::from_state(&url, &security)?,
                &env,
                SSL_DIR_IN_MACHINE,
                LAB_DIR_IN_MACHINE,
            )?;
            security.services_env = Some(env);
            security.services_cert = Some(services.cert);
            security.services_key = Some(services.key);
            self.state.security = Some(security);
            self.save()?;
        }
        self.write_env_file()?;
        events(LabEvent::EtcdReady { url });

        for (index, spec) in specs.iter().enumerate() {
            if !per_machine {
                self.record_machine(index, spec)?;
            }
            self.machine_files(index, ca.as_ref())?;
            let m = &self.state.machines[index];
            events(LabEvent::MachineStarting {
                name: m.name.clone(),
                ip: m.ip,
            });
            self.boot(index)?;
        }
        let all: Vec<usize> = (0..specs.len()).collect();
        self.wait_running(&all, opts.boot_timeout, events)
    }

    /// Records, then creates, a machine's network.
    fn record_machine(&mut self, index: usize, spec: &MachineSpec) -> Result<()> {
        let subnet = self.subnet()?;
        let machine = MachineState {
            name: spec.name.clone(),
            index,
            ip: subnet.machine_ip(index),
            machine_id: new_machine_id()?,
            metadata: spec.metadata.clone(),
            netns: Some(self.name.netns(&spec.name)),
            host_veth: Some(self.name.host_veth(index)),
            cgroups: self
                .state
                .cgroups
                .iter()
                .map(|c| c.join(&spec.name))
                .collect(),
            pid: None,
            boot_secs: None,
            cut: false,
            relays: Vec::new(),
            etcd_user: None,
            api_etcd_user: None,
            control: spec.control,
        };
        self.state.machines.push(machine.clone());
        self.save()?;
        net::create_machine_net(
            machine.netns.as_deref().unwrap_or_default(),
            machine.host_veth.as_deref().unwrap_or_default(),
            &self.name.bridge(),
            subnet,
            machine.ip,
        )
    }

    /// Writes a recorded machine's files: fleet.conf and, in a secure lab, its
    /// certificate and etcd user.
    fn machine_files(&mut self, index: usize, ca: Option<&Ca>) -> Result<()> {
        let mut machine = self.state.machines[index].clone();
        let dir = self.machine_dir(&machine.name);
        std::fs::create_dir_all(&dir)
            .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            std::fs::write(&path, text)
                .map_err(LabError::io(format!("cannot write {}", path.display())))
        };
        // Its own certificate (API server, and client of etcd and of other fleetds) and
        // etcd user, whose password only its fleet.conf (0600) holds.
        let mut password = None;
        if let (Some(ca), Some(security)) = (ca, &self.state.security) {
            ca.issue(&Subject {
                stem: &machine.name,
                common_name: &secure::machine_user(&machine.machine_id),
                organization: Some(certs::MACHINE_ORG),
                ips: vec![IpAddr::V4(machine.ip)],
                dns: vec![machine.name.clone()],
            })?;
            let secret = certs::new_password()?;
            let api_secret = certs::new_password()?;
            let etcd = EtcdAdmin::from_state(self.etcd_url().unwrap_or_default(), security)?;
            let (user, api_user) = secure::add_machine_user(
                &etcd,
                &machine.machine_id,
                &secret,
                &api_secret,
                &self.state.etcd_key_prefix,
                machine.control,
            )?;
            machine.etcd_user = Some(user);
            machine.api_etcd_user = api_user;
            self.state.machines[index] = machine.clone();
            self.save()?;
            password = Some((secret, api_secret));
        }
        certs::write_file(
            &dir.join("fleet.conf"),
            &self.fleet_conf(&machine, password.as_ref())?,
            0o600,
        )?;
        write("fleet.service", FLEET_SERVICE.to_string())?;
        write("hostname", format!("{}\n", machine.name))?;
        Ok(())
    }

    /// Starts a machine's nspawn, in the machine's own cgroups from its first instruction.
    fn boot(&mut self, index: usize) -> Result<()> {
        let m = self.state.machines[index].clone();
        for dir in &m.cgroups {
            std::fs::create_dir_all(dir).map_err(LabError::io(format!(
                "cannot create cgroup {}",
                dir.display()
            )))?;
        }
        let dir = self.machine_dir(&m.name);
        let log_path = dir.join("console.log");
        let log = std::fs::File::create(&log_path).map_err(LabError::io(format!(
            "cannot create {}",
            log_path.display()
        )))?;
        let err_log = log
            .try_clone()
            .map_err(LabError::io("cannot dup log file"))?;
        // The shell moves itself into the cgroups, then execs nspawn (same pid).
        let mut script = String::new();
        for cg in &m.cgroups {
            script.push_str(&format!("echo $$ > '{}/cgroup.procs' && ", cg.display()));
        }
        script.push_str("exec \"$@\"");
        let netns = m.netns.clone().unwrap_or_default();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("sh").arg("systemd-nspawn");
        cmd.args([
            "--register=no",
            "--keep-unit",
            "--quiet",
            "--volatile=overlay",
        ])
        .arg("-D")
        .arg(&self.state.rootfs)
        .arg(format!("--machine={}", self.name.machine(&m.name)))
        .arg(format!("--hostname={}", m.name))
        .arg(format!("--uuid={}", m.machine_id))
        .arg(format!("--network-namespace-path=/run/netns/{netns}"))
        .arg(bind(
            &self.state.fleetd,
            &format!("{FLEET_DIR_IN_MACHINE}/fleetd"),
        ))
        .arg(bind(&dir.join("fleet.conf"), "/etc/fleet/fleet.conf"))
        .arg(bind(&dir.join("hostname"), "/etc/hostname"))
        .arg(bind(
            &dir.join("fleet.service"),
            "/etc/systemd/system/fleet.service",
        ))
        .arg("--console=read-only");
        if let Some(security) = &self.state.security {
            let pki = self.pki_dir();
            cmd.arg(bind(&security.ca, &format!("{SSL_DIR_IN_MACHINE}/ca.crt")))
                .arg(bind(
                    &pki.join(format!("{}.crt", m.name)),
                    &format!("{SSL_DIR_IN_MACHINE}/machine.crt"),
                ))
                .arg(bind(
                    &pki.join(format!("{}.key", m.name)),
                    &format!("{SSL_DIR_IN_MACHINE}/machine.key"),
                ));
            for (file, path) in [
                ("services.env", &security.services_env),
                ("services.crt", &security.services_cert),
                ("services.key", &security.services_key),
            ] {
                if let Some(path) = path {
                    cmd.arg(bind(path, &format!("{LAB_DIR_IN_MACHINE}/{file}")));
                }
            }
        }
        if let Some(fleetctl) = &self.state.fleetctl {
            cmd.arg(bind(fleetctl, &format!("{FLEET_DIR_IN_MACHINE}/fleetctl")));
        }
        // Arguments after -b go to the machine's systemd, which reads them as its kernel
        // command line: start fleet.service without changing the shared image.
        cmd.args(["-b", "systemd.wants=fleet.service"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        if self.detach {
            cmd.process_group(0); // not hit by the terminal's Ctrl-C after the CLI is gone
        }
        let child = cmd
            .spawn()
            .map_err(LabError::io("cannot run systemd-nspawn"))?;
        self.state.machines[index].pid = Some(child.id());
        self.state.machines[index].boot_secs = None;
        self.children.insert(m.name.clone(), child);
        self.save()
    }

    /// Waits until each machine's systemd says running (or degraded), recording boot times.
    fn wait_running(
        &mut self,
        indices: &[usize],
        timeout: Duration,
        events: &mut dyn FnMut(LabEvent),
    ) -> Result<()> {
        let started = Instant::now();
        let mut pending: Vec<usize> = indices.to_vec();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &index in &pending {
                let name = self.state.machines[index].name.clone();
                if let Some(child) = self.children.get_mut(&name)
                    && let Ok(Some(status)) = child.try_wait()
                {
                    self.children.remove(&name);
                    self.state.machines[index].pid = None;
                    let log = sys::log_tail(&self.machine_dir(&name).join("console.log"), 10);
                    return Err(LabError::Command {
                        cmd: format!("systemd-nspawn for {name}"),
                        detail: format!("exited ({status}) while booting:\n{log}"),
                    });
                }
                if self
                    .system_state(index)
                    .is_some_and(|s| s == "running" || s == "degraded")
                {
                    let secs = started.elapsed().as_secs_f64();
                    self.state.machines[index].boot_secs = Some(secs);
                    events(LabEvent::MachineRunning { name, secs });
                } else {
                    still.push(index);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if started.elapsed() >= timeout {
                let names: Vec<_> = pending
                    .iter()
                    .map(|&i| self.state.machines[i].name.clone())
                    .collect();
                return Err(LabError::Timeout {
                    what: format!("systemd in {}", names.join(", ")),
                    secs: timeout.as_secs(),
                    detail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.save()
    }

    /// `systemctl is-system-running` inside the machine, if it answers.
    fn system_state(&self, index: usize) -> Option<String> {
        let leader = self.leader(index)?;
        let out = Command::new("timeout")
            .args([
                PROBE_TIMEOUT_SECS,
                "nsenter",
                "-t",
                &leader.to_string(),
                "-a",
                "systemctl",
                "is-system-running",
            ])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The machine's PID 1 on the host, while it runs.
    fn leader(&self, index: usize) -> Option<u32> {
        let m = &self.state.machines[index];
        let pid = m.pid?;
        if !self.is_machine_process(pid, m) {
            return None;
        }
        sys::container_leader(pid)
    }

    /// True when `pid` still is this machine's nspawn (not a recycled pid).
    fn is_machine_process(&self, pid: u32, m: &MachineState) -> bool {
        sys::runs(
            pid,
            NSPAWN,
            &format!("--machine={}", self.name.machine(&m.name)),
        )
    }

    /// Attaches to a lab started by another process (the CLI's later commands).
    /// Its processes are not ours: dropping the handle leaves the lab running.
    pub fn attach(name: &LabName) -> Result<Lab> {
        let state = LabState::load(name)?.ok_or_else(|| LabError::NotRunning(name.to_string()))?;
        Ok(Lab {
            name: name.clone(),
            state,
            children: BTreeMap::new(),
            etcd: Vec::new(),
            etcd_children: Vec::new(),
            detach: true,
            torn_down: false,
        })
    }

    /// Lets the lab outlive this handle and process (`fleet-lab up` exits, the lab runs).
    pub fn detach(mut self) {
        self.detach = true;
        self.children.clear(); // dropping a Child neither kills nor waits
        for etcd in std::mem::take(&mut self.etcd) {
            std::mem::forget(etcd); // keeps the process and its data dir; `down` removes both
        }
    }

    pub fn name(&self) -> &LabName {
        &self.name
    }

    /// Everything recorded about the lab.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The machines, in boot order.
    pub fn machines(&self) -> &[MachineState] {
        &self.state.machines
    }

    /// etcd's client URL for the host (`fleetctl --endpoint`).
    pub fn etcd_url(&self) -> Option<&str> {
        self.state.etcd.as_ref().map(|e| e.local_url.as_str())
    }

    /// etcd's client URL as the machines reach it (on the bridge).
    pub fn etcd_bridge_url(&self) -> Option<&str> {
        self.state.etcd.as_ref().map(|e| e.bridge_url.as_str())
    }

    /// A secure lab's CA and the host's admin identity; `None` when insecure.
    pub fn security(&self) -> Option<&crate::state::SecurityState> {
        self.state.security.as_ref()
    }

    /// The fleet API URL of machine `node` as the host reaches it (`https` in a
    /// secure lab).
    pub fn api_url(&self, node: &str) -> Result<String> {
        let ip = self.state.machine(node)?.ip;
        let scheme = if self.state.security.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(format!("{scheme}://{ip}:{API_PORT}"))
    }

    /// The file to `source` to point fleetctl at this lab.
    pub fn env_file(&self) -> PathBuf {
        self.name.state_dir().join("env")
    }

    /// True while the machine's container is up.
    pub fn is_running(&self, node: &str) -> Result<bool> {
        let index = self.index(node)?;
        Ok(self.leader(index).is_some())
    }

    /// `systemctl is-system-running` of a machine ("down" when its container is not up).
    pub fn system_state_of(&self, node: &str) -> Result<String> {
        let index = self.index(node)?;
        Ok(self
            .system_state(index)
            .unwrap_or_else(|| "down".to_string()))
    }

    /// A command that runs `program` inside the machine, with a clean environment.
    /// Callers choose its stdio (`ssh` inherits the terminal, `exec` captures).
    pub fn command(&self, node: &str, program: &str) -> Result<Command> {
        let index = self.index(node)?;
        let leader = self
            .leader(index)
            .ok_or_else(|| LabError::MachineDown(node.to_string()))?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &leader.to_string(), "-a", "--", "/usr/bin/env", "-i"])
            .arg(format!("PATH={MACHINE_PATH}"))
            .arg("HOME=/root")
            .arg(format!(
                "TERM={}",
                std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
            ))
            .arg(program);
        Ok(cmd)
    }

    /// Runs a command inside the machine and returns its output.
    pub fn exec(&self, node: &str, args: &[&str]) -> Result<Output> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::InvalidConfig("exec needs a command".to_string()))?;
        self.command(node, program)?
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .map_err(LabError::io("cannot run nsenter"))
    }

    /// Hard machine loss: SIGKILL to the machine's PID 1, then its nspawn, and to the
    /// etcd member it runs (`etcd = "per-machine"`). Idempotent.
    pub fn kill(&mut self, node: &str) -> Result<()> {
        let index = self.index(node)?;
        if let Some(member) = self.member_of(node) {
            self.etcd_kill(&member)?;
        }
        let m = self.state.machines[index].clone();
        if let Some(pid) = m.pid {
            if self.is_machine_process(pid, &m) {
                if let Some(leader) = sys::container_leader(pid) {
                    sys::sigkill(leader);
                }
                if !self.wait_exit(&m.name, pid, KILL_TIMEOUT) {
                    sys::sigkill(pid);
                    self.wait_exit(&m.name, pid, KILL_TIMEOUT);
                }
            }
            self.children.remove(&m.name);
        }
        for dir in &m.cgroups {
            let stray = cgroup::processes(dir);
            for &pid in &stray {
                sys::sigkill(pid);
            }
            sys::wait_gone(&stray, KILL_TIMEOUT);
            cgroup::remove_tree(dir);
        }
        self.state.machines[index].pid = None;
        self.save()
    }

    /// Waits for an nspawn to exit, reaping it when it is our child.
    fn wait_exit(&mut self, node: &str, pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let gone = match self.children.get_mut(node) {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => !sys::alive(pid),
            };
            if gone {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Network partition: the machine's link to the bridge goes down.
    pub fn cut(&mut self, node: &str) -> Result<()> {
        self.set_cut(node, true)
    }

    /// Ends a partition made by [`Lab::cut`].
    pub fn heal(&mut self, node: &str) -> Result<()> {
        self.set_cut(node, false)
    }

    fn set_cut(&mut self, node: &str, cut: bool) -> Result<()> {
        let index = self.index(node)?;
        let veth = self.state.machines[index]
            .host_veth
            .clone()
            .unwrap_or_default();
        net::set_link(&veth, !cut)?;
        self.state.machines[index].cut = cut;
        self.save()
    }

    /// A bad link for `node`: `delay` added each way to its etcd traffic (a relay per
    /// etcd member), and `loss` percent of its packets dropped both ways. Replaces an
    /// earlier degradation; [`Lab::restore`] ends it.
    pub fn degrade(&mut self, node: &str, delay: Option<Duration>, loss: Option<u8>) -> Result<()> {
        let index = self.index(node)?;
        self.restore(node)?;
        let netns = self.state.machines[index].netns.clone().unwrap_or_default();
        if let Some(percent) = loss {
            if !(1..=100).contains(&percent) {
                return Err(LabError::InvalidArgument(format!(
                    "loss {percent}%: give 1 to 100"
                )));
            }
            link::set_loss(&netns, percent)?;
        }
        if let Some(delay) = delay.filter(|d| !d.is_zero()) {
            if delay > link::MAX_DELAY {
                return Err(LabError::InvalidArgument(format!(
                    "delay {delay:?} is over {:?}",
                    link::MAX_DELAY
                )));
            }
            let fleet_lab = self.state.fleetd.with_file_name("fleet-lab");
            if !fleet_lab.exists() {
                return Err(LabError::MissingBinary {
                    path: fleet_lab,
                    hint: "the delay relay is fleet-lab itself: cargo build -p fleet-lab".into(),
                });
            }
            let subnet = self.subnet()?;
            let members: Vec<Ipv4Addr> = self
                .state
                .etcd
                .as_ref()
                .map(|e| e.members.iter().map(|m| m.ip).collect())
                .unwrap_or_default();
            let mut redirects = Vec::new();
            for ip in members {
                let to = std::net::SocketAddr::new(IpAddr::V4(ip), ETCD_CLIENT_PORT);
                let (pid, relay) = link::spawn_relay(
                    &fleet_lab,
                    &self.name.state_dir(),
                    subnet.bridge_ip(),
                    to,
                    delay,
                )?;
                self.state.machines[index].relays.push(pid);
                self.save()?;
                redirects.push((ip, relay));
            }
            link::set_redirects(&netns, &redirects)?;
        }
        Ok(())
    }

    /// Ends [`Lab::degrade`]: no loss, new connections go direct. Connections made
    /// through a relay stay up: the relay (told by SIGTERM) passes them on without delay
    /// until they end, then exits (`down` ends any left).
    pub fn restore(&mut self, node: &str) -> Result<()> {
        let index = self.index(node)?;
        if let Some(netns) = self.state.machines[index].netns.clone() {
            link::clear(&netns);
        }
        let lab_dir = format!("--lab-dir={}", self.name.state_dir().display());
        for pid in std::mem::take(&mut self.state.machines[index].relays) {
            if sys::runs(pid, "fleet-lab", &lab_dir) {
                sys::sigterm(pid);
            }
        }
        self.save()
    }

    /// A hung fleetd: SIGSTOP to every process of the machine's `fleet.service`. The
    /// machine and its units keep running; its lease lapses after agent_ttl.
    pub fn pause(&mut self, node: &str) -> Result<()> {
        self.signal_fleetd(node, "SIGSTOP")
    }

    /// Ends [`Lab::pause`]: SIGCONT to fleetd.
    pub fn resume(&mut self, node: &str) -> Result<()> {
        self.signal_fleetd(node, "SIGCONT")
    }

    fn signal_fleetd(&mut self, node: &str, signal: &str) -> Result<()> {
        let out = self.exec(
            node,
            &[
                "systemctl",
                "kill",
                &format!("--signal={signal}"),
                "--",
                "fleet.service",
            ],
        )?;
        if !out.status.success() {
            return Err(LabError::Command {
                cmd: format!("systemctl kill --signal={signal} fleet.service in {node}"),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Reboots a machine (hard: kill, then boot again with the same id and IP; its
    /// overlay starts fresh). Returns the boot time.
    pub fn restart(&mut self, node: &str, timeout: Duration) -> Result<f64> {
        let index = self.index(node)?;
        self.kill(node)?;
        if let Some(member) = self.member_of(node) {
            let member = self.member_index(&member)?;
            self.spawn_member(member)?;
        }
        self.boot(index)?;
        self.wait_running(&[index], timeout, &mut |_| {})?;
        Ok(self.state.machines[index].boot_secs.unwrap_or_default())
    }

    /// Tears the lab down: processes, cgroups, netns, links, state dir. Idempotent.
    pub fn down(&mut self) -> Result<()> {
        self.torn_down = true;
        let result = teardown(&self.name, Some(&self.state), &mut self.children);
        self.etcd.clear(); // kills, reaps and removes their data dirs
        for mut child in std::mem::take(&mut self.etcd_children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    /// Tears down a lab by name, from its state file if any and from derived names
    /// otherwise (an `up` that crashed). Fine to call when no such lab exists.
    pub fn destroy(name: &LabName) -> Result<()> {
        if !sys::is_root() {
            return Err(LabError::NotRoot);
        }
        let state = LabState::load(name).ok().flatten();
        teardown(name, state.as_ref(), &mut BTreeMap::new())
    }

    /// What of lab `name` still exists on the host: processes, netns, links, cgroup
    /// directories, mounts, state dir. Empty after a complete `down` (tests assert it).
    pub fn leftovers(name: &LabName) -> Vec<String> {
        let mut found = Vec::new();
        let mut pids = nspawn_pids(name);
        pids.extend(sys::pids_running(
            "fleet-lab",
            &format!("--lab-dir={}", name.state_dir().display()),
        ));
        for root in cgroup::hierarchies() {
            pids.extend(cgroup::processes(&root.join(name.cgroup_rel())));
        }
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            found.push(format!(
                "process {pid}: {}",
                sys::cmdline(pid).unwrap_or_default()
            ));
        }
        found.extend(
            net::netns_with_prefix(&name.netns_prefix())
                .into_iter()
                .map(|n| format!("netns {n}")),
        );
        found.extend(
            net::links_with_prefix(&name.veth_prefix())
                .into_iter()
                .map(|l| format!("link {l}")),
        );
        found.extend(
            net::links_with_prefix(&name.bridge())
                .into_iter()
                .map(|l| format!("link {l}")),
        );
        for root in cgroup::hierarchies() {
            let dir = root.join(name.cgroup_rel());
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state_dir = name.state_dir().display().to_string();
        for line in mounts.lines() {
            if line.contains(&format!("/run/netns/{}", name.netns_prefix()))
                || line.contains(&state_dir)
            {
                found.push(format!("mount {line}"));
            }
        }
        if name.state_dir().exists() {
            found.push(format!("state dir {state_dir}"));
        }
        found
    }

    fn index(&self, node: &str) -> Result<usize> {
        self.state.machine(node).map(|m| m.index)
    }

    fn subnet(&self) -> Result<Subnet> {
        self.state
            .subnet
            .ok_or_else(|| LabError::NotRunning(self.name.to_string()))
    }

    /// The lab's CA, certificates and keys.
    fn pki_dir(&self) -> PathBuf {
        self.name.state_dir().join("pki")
    }

    fn machine_dir(&self, node: &str) -> PathBuf {
        self.name.state_dir().join("machines").join(node)
    }

    fn save(&self) -> Result<()> {
        self.state.save(&self.name.state_dir())
    }

    /// fleet.conf of one machine: its etcd, identity, and the fleet API on
    /// `<ip>:`[`API_PORT`]. In a secure lab etcd is reached over TLS with the machine's
    /// certificate and etcd user (`password`: the machine's, and its API's own user's on
    /// a control machine), and the API serves mutual TLS with the
    /// same certificate; an insecure lab serves plain HTTP/2 on its private bridge, so
    /// it opts in with `api_allow_plaintext`.
    fn fleet_conf(&self, m: &MachineState, password: Option<&(String, String)>) -> Result<String> {
        let etcd = self
            .etcd_bridge_url()
            .ok_or_else(|| LabError::NotRunning(self.name.to_string()))?;
        let metadata = m
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let api_identity = match (&m.api_etcd_user, password) {
            (Some(user), Some((_, password))) => format!(
                "api_etcd_username={user}\n\
                 api_etcd_password={password}\n"
            ),
            _ => String::new(),
        };
        let security = match (&m.etcd_user, password) {
            (Some(user), Some((password, _))) => format!(
                "etcd_cafile={ssl}/ca.crt\n\
                 etcd_certfile={ssl}/machine.crt\n\
                 etcd_keyfile={ssl}/machine.key\n\
                 etcd_username={user}\n\
                 etcd_password={password}\n\
                 api_tls_cert={ssl}/machine.crt\n\
                 api_tls_key={ssl}/machine.key\n\
                 api_tls_client_ca={ssl}/ca.crt\n\
                 {api_identity}",
                ssl = SSL_DIR_IN_MACHINE
            ),
            _ => "api_allow_plaintext=true\n".to_string(),
        };
        let role = if m.control {
            ""
        } else {
            "# A worker: no engine; its etcd user holds its own machine role only.\n\
             disable_engine=true\n"
        };
        Ok(format!(
            "# Written by fleet-lab for machine {} of lab {}.\n\
             etcd_servers={etcd}\n\
             etcd_key_prefix={}\n\
             public_ip={}\n\
             metadata={metadata}\n\
             agent_ttl={}\n\
             engine_lease_ttl={}\n\
             api_listen={}:{API_PORT}\n\
             {role}{security}",
            m.name,
            self.name,
            self.state.etcd_key_prefix,
            m.ip,
            self.state.agent_ttl,
            self.state
                .engine_lease_ttl
                .as_deref()
                .unwrap_or(&self.state.agent_ttl),
            m.ip
        ))
    }

    /// The `env` file: fleetctl's etcd driver at the lab's etcd and, in a secure lab,
    /// the host's admin identity, which the API driver uses too
    /// (`fleetctl --driver=API --endpoint=$FLEET_LAB_API ...`).
    fn write_env_file(&self) -> Result<()> {
        let url = self.etcd_url().unwrap_or_default();
        let name = self.name.to_string();
        let mut vars = vec![
            ("FLEETCTL_DRIVER", "etcd".to_string()),
            ("FLEETCTL_ENDPOINT", url.to_string()),
            (
                "FLEETCTL_ETCD_KEY_PREFIX",
                self.state.etcd_key_prefix.clone(),
            ),
            ("FLEET_LAB_NAME", name),
        ];
        if let Some(s) = &self.state.security {
            vars.extend([
                ("FLEETCTL_CA_FILE", s.ca.display().to_string()),
                ("FLEETCTL_CERT_FILE", s.admin_cert.display().to_string()),
                ("FLEETCTL_KEY_FILE", s.admin_key.display().to_string()),
                ("FLEETCTL_ETCD_USERNAME", s.admin_user.clone()),
                (
                    "FLEETCTL_ETCD_PASSWORD_FILE",
                    s.admin_password_file.display().to_string(),
                ),
            ]);
        }
        if let Some(subnet) = self.state.subnet {
            let scheme = if self.state.security.is_some() {
                "https"
            } else {
                "http"
            };
            vars.push((
                "FLEET_LAB_API",
                format!("{scheme}://{}:{API_PORT}", subnet.machine_ip(0)),
            ));
        }
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let text = env_file_text(&vars);
        let path = self.env_file();
        std::fs::write(&path, text)
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.detach && !self.torn_down {
            let _ = self.down();
        }
    }
}

/// The unit that runs the bind-mounted fleetd in every machine. It may fail and restart
/// forever: the lab never waits on fleetd.
const FLEET_SERVICE: &str = "\
[Unit]
Description=fleet daemon (bind-mounted by fleet-lab)

[Service]
ExecStart=/opt/fleet/fleetd
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
";

fn bind(host: &Path, inside: &str) -> String {
    format!("--bind-ro={}:{inside}", host.display())
}

fn check_binary(path: &Path, hint: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(LabError::MissingBinary {
            path: path.to_path_buf(),
            hint: hint.to_string(),
        })
    }
}

/// A random 128-bit id in machine-id form (32 hex digits), from the kernel.
fn new_machine_id() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(LabError::io("cannot read /proc/sys/kernel/random/uuid"))?;
    Ok(uuid.trim().replace('-', ""))
}

/// The `env` file users source: every value single-quoted for the shell, so no value
/// (a key prefix with `$(...)` or `;`, say) runs as code when it is sourced.
fn env_file_text(vars: &[(&str, &str)]) -> String {
    let mut text = String::from("# Source this file to point fleetctl at the lab.\n");
    for (name, value) in vars {
        text.push_str(&format!(
            "export {name}='{}'\n",
            value.replace('\'', r"'\''")
        ));
    }
    text
}

/// Where nspawn keeps a directory per running machine.
const NSPAWN_PROPAGATE: &str = "/run/systemd/nspawn/propagate";

/// The nspawn program's name, as its executable is called.
const NSPAWN: &str = "systemd-nspawn";

/// The lab's container processes, found by what they are: systemd-nspawn running in
/// one of the lab's network namespaces.
fn nspawn_pids(name: &LabName) -> Vec<u32> {
    sys::pids_running(
        NSPAWN,
        &format!(
            "--network-namespace-path=/run/netns/{}*",
            name.netns_prefix()
        ),
    )
}

/// Removes everything of lab `name`: recorded resources first, then anything found by
/// its derived names. Reports what could not be removed.
fn teardown(
    name: &LabName,
    state: Option<&LabState>,
    children: &mut BTreeMap<String, Child>,
) -> Result<()> {
    // 1. Machines: SIGKILL each container's PID 1, then any nspawn still there.
    let mut nspawns = nspawn_pids(name);
    for child in children.values() {
        if !nspawns.contains(&child.id()) {
            nspawns.push(child.id());
        }
    }
    for &pid in &nspawns {
        if let Some(leader) = sys::container_leader(pid) {
            sys::sigkill(leader);
        }
    }
    let reap = |children: &mut BTreeMap<String, Child>| {
        for child in children.values_mut() {
            let _ = child.try_wait();
        }
    };
    let deadline = Instant::now() + KILL_TIMEOUT;
    while nspawns.iter().any(|&p| sys::alive(p)) && Instant::now() < deadline {
        reap(children);
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &nspawns {
        if sys::alive(pid) {
            sys::sigkill(pid);
        }
    }
    for child in children.values_mut() {
        let _ = child.wait();
    }
    children.clear();
    sys::wait_gone(&nspawns, KILL_TIMEOUT);

    // 1b. Link relays (`degrade --delay`): fleet-lab processes serving this lab.
    let relays = sys::pids_running(
        "fleet-lab",
        &format!("--lab-dir={}", name.state_dir().display()),
    );
    for &pid in &relays {
        sys::sigkill(pid);
    }
    sys::wait_gone(&relays, KILL_TIMEOUT);

    // 2. etcd members, when another process started them (our own handles drop after).
    for member in state
        .and_then(|s| s.etcd.as_ref())
        .map_or(&[][..], |e| &e.members[..])
    {
        let dir = member.dir.display().to_string();
        let data_dir = format!("--data-dir={dir}/*");
        let mut pids = sys::pids_running("etcd", &data_dir);
        pids.extend(
            member
                .pid
                .filter(|&p| sys::runs(p, "etcd", &data_dir) && !pids.contains(&p)),
        );
        for &pid in &pids {
            sys::sigkill(pid);
        }
        sys::wait_gone(&pids, KILL_TIMEOUT);
        if pids.iter().all(|&p| !sys::alive(p)) {
            let _ = std::fs::remove_dir_all(&member.dir);
        }
    }

    // 3. cgroups (machines' subtrees live under the lab's directory). Anything still
    // in them (a container whose nspawn died first) is killed: the cgroup is the machine.
    let mut leftovers = Vec::new();
    for root in cgroup::hierarchies() {
        let dir = root.join(name.cgroup_rel());
        let stray = cgroup::processes(&dir);
        for &pid in &stray {
            sys::sigkill(pid);
        }
        sys::wait_gone(&stray, KILL_TIMEOUT);
        if !cgroup::remove_tree(&dir) {
            leftovers.push(dir.display().to_string());
        }
        if let Some(parent) = dir.parent() {
            cgroup::remove_if_empty(parent);
        }
    }

    // 4. Network: netns (takes the machine ends of the veths), host veths, bridge.
    for ns in net::netns_with_prefix(&name.netns_prefix()) {
        net::delete_netns(&ns);
    }
    for link in net::links_with_prefix(&name.veth_prefix()) {
        net::delete_link(&link);
    }
    net::delete_link(&name.bridge());
    leftovers.extend(net::netns_with_prefix(&name.netns_prefix()));
    leftovers.extend(net::links_with_prefix(&name.veth_prefix()));
    leftovers.extend(net::links_with_prefix(&name.bridge()));
    leftovers.extend(
        nspawns
            .iter()
            .filter(|&&p| sys::alive(p))
            .map(|p| format!("process {p}")),
    );

    // 5. nspawn's per-machine propagation directories, which it cannot remove itself
    // where /run is no tmpfs.
    for m in state.map(|s| s.machines.as_slice()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(Path::new(NSPAWN_PROPAGATE).join(name.machine(&m.name)));
    }

    // 6. State directory, last: it is what marks the lab as existing.
    let dir = name.state_dir();
    if leftovers.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if leftovers.is_empty() {
        Ok(())
    } else {
        Err(LabError::Command {
            cmd: format!("fleet-lab down --name {name}"),
            detail: format!("could not remove: {}", leftovers.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sourcing the env file sets each value verbatim and runs nothing.
    #[test]
    fn env_file_values_are_quoted_for_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let evil = format!("/x/$(touch {0});touch {0};'`touch {0}`'", marker.display());
        let file = dir.path().join("env");
        std::fs::write(&file, env_file_text(&[("FLEETCTL_ETCD_KEY_PREFIX", &evil)])).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1" && printf %s "$FLEETCTL_ETCD_KEY_PREFIX""#)
            .arg("bash")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), evil);
        assert!(!marker.exists(), "sourcing the env file ran a command");
    }
}
