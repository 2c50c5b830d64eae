//! `fleetctl etcd-roles`: creates or updates the etcd roles and users of a cluster
//! (see `fleet_registry::roles`): control-plane machines (`--engine-machine`,
//! `--api-machine`, with `--api-identity` their APIs' own users), workers
//! (`--machine` only), people; a machine's user when a machine is added; and moves
//! states left in the old key layout. Talks to etcd directly with the etcd driver's
//! flags (an etcd root user once authentication is on). Idempotent: a second run
//! changes nothing and says so. Passwords are never printed: each user's password is
//! read from, or generated into, `<password-dir>/<user>` (mode 0600).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use fleet_core::MachineId;
use fleet_registry::roles::{self, ROOT};
use fleet_registry::{Registry, RegistryError, Secret};

use crate::cli::EtcdRolesArgs;
use crate::context::{Ctx, fail, out, registry_error_line};

pub async fn run(ctx: &Ctx, args: EtcdRolesArgs) -> anyhow::Result<ExitCode> {
    // Checked before connecting: bad input changes nothing.
    let plan = Plan::from_args(&args)?;
    let ns_plan = super::etcd_roles_ns::NsPlan::from_args(&args.namespaces)?;
    let line = |e: RegistryError| fail(registry_error_line(&e));
    let (registry, version, authenticated) = connect(ctx, &plan).await?;
    if roles::version_confines_users(&version) != Some(true) {
        crate::context::err(format!(
            "WARNING: etcd {version} lets any etcd user write any key with a nested transaction (GHSA-rfx7-8w68-q57q): these roles do not confine machines until etcd is upgraded to 3.4.44, 3.5.30, 3.6.11 or later"
        ));
    }
    let mut changes = Vec::new();
    let moved = registry.migrate_legacy_states().await.map_err(line)?;
    if moved > 0 {
        changes.push(format!(
            "moved {moved} unit states from state/ to machine-state/"
        ));
    }
    let keys = registry.keys().clone();
    let mut role_specs = roles::cluster_roles(&keys);
    role_specs.extend(plan.users.iter().filter_map(|u| match u {
        User::Machine { id, .. } => Some(roles::machine_role(&keys, id)),
        _ => None,
    }));
    role_specs.extend(ns_plan.role_specs(&keys));
    for spec in &role_specs {
        changes.extend(registry.apply_role(spec).await.map_err(line)?);
    }
    let existing = registry.etcd_users().await.map_err(line)?;
    let mut users: Vec<(String, BTreeSet<String>)> =
        plan.users.iter().map(|u| (u.name(), u.roles())).collect();
    ns_plan.add_users(&mut users);
    let enable = args.enable_auth && !authenticated;
    if enable {
        users.push((ROOT.to_string(), BTreeSet::from([ROOT.to_string()])));
    }
    for (name, roles) in &users {
        changes.extend(ensure_user(&registry, &plan, &existing, name).await?);
        changes.extend(registry.apply_user_roles(name, roles).await.map_err(line)?);
    }
    if enable {
        registry.enable_etcd_auth().await.map_err(line)?;
        changes.push("etcd authentication enabled (connect as root from now on)".into());
    }
    if changes.is_empty() {
        out("etcd roles and users are up to date")?;
    }
    for c in changes {
        out(c)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects as the etcd flags say; without credentials, as `root` with the password in
/// `<password-dir>/root` when that file exists (an earlier `--enable-auth` run wrote
/// it), so the same command line works again once authentication is on. Returns the
/// registry, etcd's version and whether it is connected as a user.
async fn connect(ctx: &Ctx, plan: &Plan) -> anyhow::Result<(Registry, String, bool)> {
    let line = |e: RegistryError| fail(registry_error_line(&e));
    let timeout = Duration::from_secs_f64(ctx.global.request_timeout.clamp(0.1, 3600.0));
    let given = ctx
        .global
        .etcd_username
        .as_deref()
        .is_some_and(|u| !u.is_empty());
    let root_file = plan.password_dir.as_ref().map(|d| d.join(ROOT));
    if !given && let Some(file) = root_file.filter(|f| f.exists()) {
        let mut global = ctx.global.clone();
        global.etcd_username = Some(ROOT.to_string());
        global.etcd_password = None;
        global.etcd_password_file = Some(file.display().to_string());
        let registry = crate::client::etcd_registry(&global, timeout).await?;
        match registry.etcd_version().await {
            Ok(version) => return Ok((registry, version, true)),
            // Authentication is still off (an earlier run stopped before turning it on).
            Err(e)
                if fleet_registry::auth_refusal(&e)
                    .is_some_and(|r| r.why.contains("authentication disabled")) => {}
            Err(e) => return Err(line(e)),
        }
    }
    let registry = crate::client::etcd_registry(&ctx.global, timeout).await?;
    let version = registry.etcd_version().await.map_err(line)?;
    Ok((registry, version, given))
}

/// Creates user `name` if missing, with the password in its file (generated into the
/// file when there is none); an existing user whose file is missing gets a new
/// password, written there. An existing user with a file is left alone.
async fn ensure_user(
    registry: &Registry,
    plan: &Plan,
    existing: &BTreeSet<String>,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let line = |e: RegistryError| fail(registry_error_line(&e));
    let Some(dir) = plan.password_dir.as_deref() else {
        return Err(fail("--password-dir is required to create etcd users"));
    };
    let file = dir.join(name);
    let exists = existing.contains(name);
    match read_password(&file)? {
        Some(_) if exists => Ok(Vec::new()),
        Some(pw) => {
            registry.add_etcd_user(name, &pw).await.map_err(line)?;
            Ok(vec![format!(
                "user {name}: created (password from {})",
                file.display()
            )])
        }
        None => {
            let pw = roles::new_password();
            write_password(dir, &file, &pw)?;
            if exists {
                registry.set_etcd_password(name, &pw).await.map_err(line)?;
                Ok(vec![format!(
                    "user {name}: new password in {}",
                    file.display()
                )])
            } else {
                registry.add_etcd_user(name, &pw).await.map_err(line)?;
                Ok(vec![format!(
                    "user {name}: created (password in {})",
                    file.display()
                )])
            }
        }
    }
}

/// The password in `file` (its first line), `None` if there is no such file.
fn read_password(file: &Path) -> anyhow::Result<Option<Secret>> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let pw = text.lines().next().unwrap_or("").trim();
            if pw.is_empty() {
                return Err(fail(format!("password file {} is empty", file.display())));
            }
            Ok(Some(Secret::new(pw)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("cannot read {}: {e}", file.display()))),
    }
}

/// Writes a new password file readable by its owner only (the directory too).
fn write_password(dir: &Path, file: &Path, pw: &Secret) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| fail(format!("cannot create {}: {e}", file.display())))?;
    writeln!(f, "{}", pw.expose())
        .map_err(|e| fail(format!("cannot write {}: {e}", file.display())))
}

/// A user this run creates or updates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum User {
    Machine {
        id: MachineId,
        engine: bool,
        api: bool,
    },
    /// A machine's API's own user (`--api-identity`).
    Api(MachineId),
    Operator(String),
    Viewer(String),
}

impl User {
    fn name(&self) -> String {
        match self {
            User::Machine { id, .. } => roles::machine_user(id),
            User::Api(id) => roles::api_user(id),
            User::Operator(n) | User::Viewer(n) => n.clone(),
        }
    }
    fn roles(&self) -> BTreeSet<String> {
        match self {
            User::Machine { id, engine, api } => roles::machine_user_roles(id, *engine, *api),
            User::Api(_) | User::Operator(_) => BTreeSet::from([roles::OPERATOR.to_string()]),
            User::Viewer(_) => BTreeSet::from([roles::VIEWER.to_string()]),
        }
    }
}

/// The validated arguments.
struct Plan {
    users: BTreeSet<User>,
    password_dir: Option<PathBuf>,
}

impl Plan {
    fn from_args(args: &EtcdRolesArgs) -> anyhow::Result<Plan> {
        let mut machines: BTreeMap<MachineId, (bool, bool)> = BTreeMap::new();
        let id = |s: &String| {
            MachineId::new(s).map_err(|e| fail(format!("invalid machine ID {s:?}: {e}")))
        };
        for m in &args.machine {
            machines.entry(id(m)?).or_default();
        }
        for m in &args.engine_machine {
            machines.entry(id(m)?).or_default().0 = true;
        }
        for m in &args.api_machine {
            machines.entry(id(m)?).or_default().1 = true;
        }
        let mut users = BTreeSet::new();
        for (id, (engine, api)) in machines {
            if api && args.api_identity {
                users.insert(User::Api(id.clone()));
            }
            let api = api && !args.api_identity;
            users.insert(User::Machine { id, engine, api });
        }
        for n in &args.operator {
            users.insert(User::Operator(super::etcd_roles_ns::person(n)?));
        }
        for n in &args.viewer {
            users.insert(User::Viewer(super::etcd_roles_ns::person(n)?));
        }
        let password_dir = args.password_dir.as_ref().map(PathBuf::from);
        let ns_users = !args.namespaces.namespace_user.is_empty();
        if password_dir.is_none() && (!users.is_empty() || ns_users || args.enable_auth) {
            return Err(fail(
                "--password-dir is required to create etcd users (each user's password is kept in a file there)",
            ));
        }
        Ok(Plan {
            users,
            password_dir,
        })
    }
}
