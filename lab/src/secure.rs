//! A secure lab's etcd users and roles, made with Debian's `etcdctl`. Passwords travel
//! on etcdctl's stdin (new users) and in its environment (root's), never on a command
//! line another user could read in the process list.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fleet_core::MachineId;
use fleet_registry::Keys;
use fleet_registry::roles::{self, Access, RoleSpec};

use crate::certs::{self, Ca, Identity, Subject};
use crate::error::{LabError, Result};
use crate::state::SecurityState;

/// The host's etcd user and certificate common name.
pub const ADMIN_USER: &str = "fleet-admin";

/// How the lab reaches its etcd as an administrator.
pub struct EtcdAdmin {
    /// Comma-separated client URLs.
    pub endpoints: String,
    pub ca: PathBuf,
    pub identity: Identity,
    /// Root's password once auth is on (`None` before).
    pub root_password: Option<String>,
}

impl EtcdAdmin {
    /// From a lab's recorded security state.
    pub fn from_state(endpoints: &str, s: &SecurityState) -> Result<EtcdAdmin> {
        let root_password = read_secret(&s.root_password_file)?;
        Ok(EtcdAdmin {
            endpoints: endpoints.to_string(),
            ca: s.ca.clone(),
            identity: Identity {
                cert: s.admin_cert.clone(),
                key: s.admin_key.clone(),
            },
            root_password: Some(root_password),
        })
    }

    /// Runs `etcdctl ARGS`, `stdin` fed to it; its stdout, or its error as one line.
    pub fn etcdctl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = Command::new("etcdctl");
        // Settings from the caller's environment would silently change the target.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", &self.endpoints)
            .env("ETCDCTL_CACERT", &self.ca)
            .env("ETCDCTL_CERT", &self.identity.cert)
            .env("ETCDCTL_KEY", &self.identity.key)
            .env("ETCDCTL_DIAL_TIMEOUT", "5s")
            .env("ETCDCTL_COMMAND_TIMEOUT", "10s");
        if let Some(password) = &self.root_password {
            cmd.env("ETCDCTL_USER", "root")
                .env("ETCDCTL_PASSWORD", password);
        }
        let shown = format!("etcdctl {}", args.join(" "));
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(LabError::io(
                "cannot run etcdctl (apt-get install etcd-client)",
            ))?;
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin.unwrap_or_default().as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(LabError::io("cannot run etcdctl"))?;
        if !out.status.success() {
            return Err(LabError::Command {
                cmd: shown,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Adds `user` with `password` (given on stdin), or changes its password.
    pub fn put_user(&self, user: &str, password: &str) -> Result<()> {
        let line = format!("{password}\n");
        match self.etcdctl(
            &["user", "add", "--interactive=false", "--", user],
            Some(&line),
        ) {
            Err(LabError::Command { detail, .. }) if detail.contains("already exists") => self
                .etcdctl(
                    &["user", "passwd", "--interactive=false", "--", user],
                    Some(&line),
                )
                .map(drop),
            other => other.map(drop),
        }
    }

    pub fn put_role(&self, role: &str) -> Result<()> {
        match self.etcdctl(&["role", "add", "--", role], None) {
            Err(LabError::Command { detail, .. }) if detail.contains("already exists") => Ok(()),
            other => other.map(drop),
        }
    }

    pub fn grant_prefix(&self, role: &str, prefix: &str) -> Result<()> {
        self.etcdctl(
            &[
                "role",
                "grant-permission",
                "--prefix=true",
                "--",
                role,
                "readwrite",
                prefix,
            ],
            None,
        )
        .map(drop)
    }

    /// Creates `spec`'s role (if missing) and grants it `spec`'s permissions: fleet's
    /// own role definitions, the same `fleetctl etcd-roles` applies.
    pub fn put_role_spec(&self, spec: &RoleSpec) -> Result<()> {
        self.put_role(&spec.name)?;
        for grant in &spec.grants {
            let access = match grant.access {
                Access::Read => "read",
                Access::Write => "write",
                Access::ReadWrite => "readwrite",
            };
            let key = String::from_utf8_lossy(&grant.key);
            let end = String::from_utf8_lossy(&grant.range_end);
            let mut args = vec!["role", "grant-permission", "--", &spec.name, access, &key];
            if !end.is_empty() {
                args.push(&end);
            }
            self.etcdctl(&args, None)?;
        }
        Ok(())
    }

    pub fn grant_role(&self, user: &str, role: &str) -> Result<()> {
        self.etcdctl(&["user", "grant-role", "--", user, role], None)
            .map(drop)
    }
}

/// Turns on etcd's authentication: a `root` user with a fresh password (saved 0600 in
/// `dir`), and the host's admin user with read and write on the fleet prefix.
/// Returns the security state to record.
pub fn enable_auth(
    ca: &Ca,
    dir: &Path,
    endpoints: &str,
    admin: &Identity,
    key_prefix: &str,
) -> Result<SecurityState> {
    let root_password = certs::new_password()?;
    let admin_password = certs::new_password()?;
    let state = SecurityState {
        ca: ca.cert(),
        admin_cert: admin.cert.clone(),
        admin_key: admin.key.clone(),
        admin_user: ADMIN_USER.to_string(),
        admin_password_file: dir.join("etcd-admin-password"),
        root_password_file: dir.join("etcd-root-password"),
        services_env: None,
        services_cert: None,
        services_key: None,
    };
    certs::write_file(
        &state.root_password_file,
        &format!("{root_password}\n"),
        0o600,
    )?;
    certs::write_file(
        &state.admin_password_file,
        &format!("{admin_password}\n"),
        0o600,
    )?;
    let mut etcd = EtcdAdmin {
        endpoints: endpoints.to_string(),
        ca: ca.cert(),
        identity: admin.clone(),
        root_password: None,
    };
    etcd.put_user("root", &root_password)?;
    etcd.grant_role("root", "root")?;
    etcd.put_user(ADMIN_USER, &admin_password)?;
    etcd.put_role(ADMIN_USER)?;
    etcd.grant_prefix(ADMIN_USER, key_prefix)?;
    etcd.grant_role(ADMIN_USER, ADMIN_USER)?;
    // fleet's cluster roles (viewer, operator, engine), which machines' users get.
    for spec in roles::cluster_roles(&fleet_keys(key_prefix)?) {
        etcd.put_role_spec(&spec)?;
    }
    etcd.etcdctl(&["auth", "enable"], None)?;
    etcd.root_password = Some(root_password);
    // Auth is on: root's password works (a wrong setup fails here, not in fleetd).
    etcd.etcdctl(&["user", "list"], None)?;
    Ok(state)
}

/// The etcd user of the units the machines run, and its certificate's common name.
pub const SERVICES_USER: &str = "lab-services";
/// What that user may read and write: the example units' service registry.
pub const SERVICES_PREFIX: &str = "/services/";

/// Creates the units' etcd user (read and write on [`SERVICES_PREFIX`]) and writes
/// etcdctl's environment for it (`ETCDCTL_*`, 0600) to `env_file`, naming the files
/// as the machines see them under `ssl_dir`.
///
/// The user has no password: etcd takes its certificate's common name as the user
/// (etcd's `--no-password`, CN-based auth). The units run etcdctl every second, and a
/// password login costs etcd a bcrypt hash each time, which on a small host starves
/// everything else.
pub fn add_services_user(
    etcd: &EtcdAdmin,
    env_file: &Path,
    ssl_dir: &str,
    dir_in_machine: &str,
) -> Result<()> {
    match etcd.etcdctl(&["user", "add", "--no-password", "--", SERVICES_USER], None) {
        Err(LabError::Command { detail, .. }) if detail.contains("already exists") => {}
        other => other.map(drop)?,
    }
    etcd.put_role(SERVICES_USER)?;
    etcd.grant_prefix(SERVICES_USER, SERVICES_PREFIX)?;
    etcd.grant_role(SERVICES_USER, SERVICES_USER)?;
    let text = format!(
        "# etcdctl's identity for units in a secure fleet-lab machine: read and write\n\
         # on {SERVICES_PREFIX} only (EnvironmentFile=-{dir_in_machine}/services.env).\n\
         ETCDCTL_CACERT={ssl_dir}/ca.crt\n\
         ETCDCTL_CERT={dir_in_machine}/services.crt\n\
         ETCDCTL_KEY={dir_in_machine}/services.key\n"
    );
    certs::write_file(env_file, &text, 0o600)
}

/// The etcd user of machine `machine_id`.
pub fn machine_user(machine_id: &str) -> String {
    format!("fleet-machine-{machine_id}")
}

/// Creates (or updates) machine `machine_id`'s etcd user with `password`, and gives it
/// its roles; on a control machine (`control`) also its API's own user with
/// `api_password`. Returns the users' names (the API's `None` on a worker).
pub fn add_machine_user(
    etcd: &EtcdAdmin,
    machine_id: &str,
    password: &str,
    api_password: &str,
    key_prefix: &str,
    control: bool,
) -> Result<(String, Option<String>)> {
    let user = machine_user(machine_id);
    etcd.put_user(&user, password)?;
    grant_machine_roles(etcd, machine_id, &user, key_prefix, control)?;
    if !control {
        return Ok((user, None));
    }
    let api = roles::api_user(&parse_machine_id(machine_id)?);
    etcd.put_user(&api, api_password)?;
    etcd.grant_role(&api, roles::OPERATOR)?;
    Ok((user, Some(api)))
}

/// The roles of one machine's etcd user, exactly as `fleetctl etcd-roles
/// --api-identity` gives them: its own role (its record and states) always; on a
/// control machine, which runs the engine, `fleet-engine` too (`--engine-machine ID`);
/// a worker (`--machine ID`) holds neither `fleet-engine` nor `fleet-operator`, and
/// loses them if it had them. `fleet-operator` belongs to the control machine's API
/// user (`fleet-api-<id>`), never to the machine's. A machine cannot write another
/// machine's states.
pub fn grant_machine_roles(
    etcd: &EtcdAdmin,
    machine_id: &str,
    user: &str,
    key_prefix: &str,
    control: bool,
) -> Result<()> {
    let machine = parse_machine_id(machine_id)?;
    etcd.put_role_spec(&roles::machine_role(&fleet_keys(key_prefix)?, &machine))?;
    let want = roles::machine_user_roles(&machine, control, false);
    for role in [roles::ENGINE, roles::OPERATOR] {
        if !want.contains(role) {
            match etcd.etcdctl(&["user", "revoke-role", "--", user, role], None) {
                Err(LabError::Command { detail, .. }) if detail.contains("not granted") => {}
                other => other.map(drop)?,
            }
        }
    }
    for role in want {
        etcd.grant_role(user, &role)?;
    }
    Ok(())
}

fn parse_machine_id(machine_id: &str) -> Result<MachineId> {
    MachineId::new(machine_id)
        .map_err(|e| LabError::InvalidArgument(format!("machine id {machine_id:?}: {e}")))
}

/// fleet's key layout under `key_prefix`.
fn fleet_keys(key_prefix: &str) -> Result<Keys> {
    Keys::new(key_prefix)
        .map_err(|e| LabError::InvalidArgument(format!("key prefix {key_prefix:?}: {e}")))
}

/// The first line of a secret file.
pub fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(LabError::io(format!("cannot read {}", path.display())))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// A certificate subject for a host-side client (no addresses: client use only).
pub fn admin_subject() -> Subject<'static> {
    Subject {
        stem: "admin",
        common_name: ADMIN_USER,
        organization: Some(certs::ADMIN_ORG),
        ips: Vec::new(),
        dns: Vec::new(),
    }
}
