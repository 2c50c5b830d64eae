//! fleet-lab: a cluster of container machines on one host, for tests, demos and people.
//!
//! Each machine is a systemd-nspawn container booting systemd as PID 1 from an overlay
//! of a cached Debian image, in its own network namespace with its own IPv4 on a host
//! bridge, with its own machine-id, `/etc/fleet/fleet.conf`, and the host's `fleetd`
//! (and `fleetctl`) bind-mounted read-only under `/opt/fleet`, run by `fleet.service`.
//! A real etcd cluster runs beside them (or one member in each), reachable on the
//! bridge; by default over TLS with client certificates and auth (see [`certs`],
//! [`secure`]).
//! Several labs coexist on one host (distinct names, subnets, ports).
//!
//! # Usage (as root)
//!
//! ```text
//! fleet-lab config create --machines 3   # writes fleet-lab.toml
//! fleet-lab up                           # image built once (1-2 min), then seconds
//! source /run/fleet-lab/<name>/env       # FLEETCTL_ENDPOINT etc. for fleetctl
//! fleet-lab status
//! fleet-lab ssh node1                    # login shell inside node1
//! fleet-lab exec node1 -- systemctl status fleet
//! fleet-lab cut node2; fleet-lab heal node2   # network partition
//! fleet-lab kill node3                   # hard machine loss (SIGKILL)
//! fleet-lab restart node3
//! fleet-lab down                         # idempotent; removes everything
//! ```
//!
//! The cluster file (TOML):
//!
//! ```toml
//! name = "demo"              # lab name: a-z, 0-9, '-'
//! agent_ttl = "10s"          # optional, written to fleet.conf
//! engine_lease_ttl = "5s"    # optional, written to fleet.conf (default: agent_ttl)
//! etcd_members = 3          # host etcd members (1, 3 or 5)
//! etcd = "host"              # or "per-machine": a member in every machine, CoreOS style
//! secure = true              # CA, etcd TLS + auth, API mutual TLS (`up --insecure`: off)
//! [[group]]
//! name = "node%d"            # node1, node2, ...
//! count = 3
//! metadata = { role = "web" }
//! packages = ["curl"]        # extra Debian packages in the image
//! ```
//!
//! In tests, [`Lab::up`] keeps every process as a child and [`Lab`]'s `Drop` tears the
//! lab down, panics included. State lives in `/run/fleet-lab/<name>/`, images in
//! `/var/cache/fleet-lab/`.

pub mod certs;
mod cgroup;
pub mod config;
pub mod error;
mod lab;
pub mod link;
pub mod names;
mod net;
pub mod rootfs;
pub mod secure;
pub mod state;
mod sys;

pub use config::{ClusterConfig, Control, EtcdPlacement, MachineGroup, MachineSpec};
pub use error::{LabError, Result};
pub use lab::{
    API_PORT, FLEET_DIR_IN_MACHINE, Lab, LabEvent, MemberStatus, SSL_DIR_IN_MACHINE, UpOptions,
};
pub use names::LabName;
pub use state::{LabState, MachineState, SecurityState, running_labs};

/// Whether the current process runs as root (the lab needs it).
pub fn is_root() -> bool {
    sys::is_root()
}
