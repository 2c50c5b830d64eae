//! The state file of a running lab: every resource `up` made, so `down`, `kill`,
//! `status` and friends work from another process and after a crash.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};
use crate::names::{LabName, RUN_DIR};
use crate::net::Subnet;

/// File name of the state inside the lab's state directory.
const STATE_FILE: &str = "state.json";

/// Everything a lab made, written after each step of `up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub subnet: Option<Subnet>,
    pub bridge: Option<String>,
    pub etcd: Option<EtcdState>,
    pub etcd_key_prefix: String,
    pub agent_ttl: String,
    /// `engine_lease_ttl` written to fleet.conf (older states: the agent_ttl).
    #[serde(default)]
    pub engine_lease_ttl: Option<String>,
    pub rootfs: PathBuf,
    pub fleetd: PathBuf,
    pub fleetctl: Option<PathBuf>,
    /// The lab's cgroup directories (one per hierarchy), parents of the machines'.
    pub cgroups: Vec<PathBuf>,
    pub machines: Vec<MachineState>,
    /// The lab's CA and credentials; `None` for an insecure lab.
    #[serde(default)]
    pub security: Option<SecurityState>,
}

/// Where a secure lab keeps its CA and the host's admin identity (all in the state
/// directory; keys and passwords 0600).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecurityState {
    /// The CA certificate every party trusts.
    pub ca: PathBuf,
    /// The host's admin certificate and key (`O=fleet:admin`), for etcd and the API.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The host's etcd user and the file holding its password.
    pub admin_user: String,
    pub admin_password_file: PathBuf,
    /// etcd's `root` password, for the lab's own user management.
    pub root_password_file: PathBuf,
    /// etcdctl's environment for the units the machines run (`lab-services`: read and
    /// write on `/services/` only), bind-mounted as `/etc/fleet-lab/services.env`.
    #[serde(default)]
    pub services_env: Option<PathBuf>,
    /// The units' client certificate and key.
    #[serde(default)]
    pub services_cert: Option<PathBuf>,
    #[serde(default)]
    pub services_key: Option<PathBuf>,
}

/// The lab's etcd cluster: members on the host, each in a netns on the bridge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EtcdState {
    /// Every member's client URL, comma-separated, for clients on the host.
    pub local_url: String,
    /// The same for clients inside the machines (the members are on the bridge too).
    pub bridge_url: String,
    pub members: Vec<EtcdMember>,
}

/// One etcd member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EtcdMember {
    /// etcd's member name: `m0`, `m1`, ...
    pub name: String,
    pub ip: std::net::Ipv4Addr,
    pub netns: String,
    /// Host end of its veth: down is a partition of this member.
    pub host_veth: String,
    pub pid: Option<u32>,
    /// Holds its data and log; removed by `down`.
    pub dir: PathBuf,
    /// The command that starts it, to start it again after a kill or stop.
    pub command: Vec<String>,
    /// The machine it runs in (`etcd = "per-machine"`), which shares its fate.
    #[serde(default)]
    pub machine: Option<String>,
}

/// One machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MachineState {
    pub name: String,
    pub index: usize,
    pub ip: Ipv4Addr,
    pub machine_id: String,
    pub metadata: BTreeMap<String, String>,
    pub netns: Option<String>,
    pub host_veth: Option<String>,
    pub cgroups: Vec<PathBuf>,
    /// The nspawn process, while the machine runs.
    pub pid: Option<u32>,
    /// Seconds from nspawn start to systemd "running" at the last boot.
    pub boot_secs: Option<f64>,
    /// Whether `cut` took its link down.
    #[serde(default)]
    pub cut: bool,
    /// The relays adding latency to its etcd traffic (`degrade --delay`).
    #[serde(default)]
    pub relays: Vec<u32>,
    /// Its etcd user (secure labs).
    #[serde(default)]
    pub etcd_user: Option<String>,
    /// Its API's own etcd user (control machines of secure labs).
    #[serde(default)]
    pub api_etcd_user: Option<String>,
    /// A control-plane machine (runs the engine; its API writes) or a worker (older
    /// states: every machine was control).
    #[serde(default = "yes")]
    pub control: bool,
}

fn yes() -> bool {
    true
}

impl LabState {
    /// Reads a lab's state; `Ok(None)` when no such lab has a state file.
    pub fn load(name: &LabName) -> Result<Option<LabState>> {
        let path = name.state_dir().join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("cannot read {}", path.display()))(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::State {
                lab: name.to_string(),
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the state atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::State {
            lab: self.name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text)
            .map_err(LabError::io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path)
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    }

    /// The machine called `node`.
    pub fn machine(&self, node: &str) -> Result<&MachineState> {
        self.machines
            .iter()
            .find(|m| m.name == node)
            .ok_or_else(|| LabError::NoSuchMachine {
                lab: self.name.clone(),
                node: node.to_string(),
            })
    }
}

/// Names of labs with a state directory on this host.
pub fn running_labs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(RUN_DIR)
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                e.file_type()
                    .ok()?
                    .is_dir()
                    .then(|| e.file_name().into_string().ok())?
            })
            .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
