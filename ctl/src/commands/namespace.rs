//! `fleetctl namespace create|set|list|delete` and `fleetctl user add|list|grant|revoke|remove`
//! (see `fleet_registry::namespaces`). Like `token`, these talk to etcd directly: its
//! credentials are what make the caller a superadmin.

use std::process::ExitCode;

use fleet_core::{Namespace, Selector};
use fleet_registry::{AccessError, NsRole};

use super::token::etcd_direct;
use crate::cli::{NamespaceCommand, UserCommand};
use crate::context::{Ctx, err, fail, out, registry_error_line};

fn line(e: AccessError) -> anyhow::Error {
    match e {
        AccessError::Registry(e) => fail(registry_error_line(&e)),
        other => fail(other.to_string()),
    }
}

fn namespace(name: &str) -> anyhow::Result<Namespace> {
    Namespace::parse(name).map_err(|e| fail(e.to_string()))
}

pub async fn run(ctx: &Ctx, command: NamespaceCommand) -> anyhow::Result<ExitCode> {
    // Bad input is refused before connecting.
    match &command {
        NamespaceCommand::Create { name, machines } | NamespaceCommand::Set { name, machines } => {
            namespace(name)?;
            Selector::parse(machines).map_err(|e| fail(e.to_string()))?;
        }
        NamespaceCommand::Delete { name, .. } => {
            namespace(name)?;
        }
        NamespaceCommand::List => {}
    }
    let registry = etcd_direct(ctx, "namespace").await?;
    match command {
        NamespaceCommand::Create { name, machines } => {
            let ns = namespace(&name)?;
            let selector = Selector::parse(&machines).map_err(|e| fail(e.to_string()))?;
            registry
                .create_namespace(&ns, &selector)
                .await
                .map_err(line)?;
        }
        NamespaceCommand::Set { name, machines } => {
            let ns = namespace(&name)?;
            let selector = Selector::parse(&machines).map_err(|e| fail(e.to_string()))?;
            registry
                .set_namespace_selector(&ns, &selector)
                .await
                .map_err(line)?;
        }
        NamespaceCommand::List => {
            let list = registry
                .list_namespaces()
                .await
                .map_err(|e| fail(registry_error_line(&e)))?;
            out("NAMESPACE\tMACHINES")?;
            out(format!("{}\t-", Namespace::DEFAULT))?;
            for (ns, sel) in list {
                let machines = if sel.is_empty() {
                    "-".to_string()
                } else {
                    sel.to_string()
                };
                out(format!("{ns}\t{machines}"))?;
            }
        }
        NamespaceCommand::Delete {
            name,
            destroy_units,
        } => {
            let ns = namespace(&name)?;
            let destroyed = registry
                .delete_namespace(&ns, destroy_units)
                .await
                .map_err(line)?;
            if destroyed > 0 {
                err(format!("destroyed {destroyed} unit(s) of namespace {ns}"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_user(ctx: &Ctx, command: UserCommand) -> anyhow::Result<ExitCode> {
    let role = |r: &str| r.parse::<NsRole>().map_err(fail);
    match &command {
        UserCommand::Grant {
            namespace: n,
            role: r,
            ..
        } => {
            namespace(n)?;
            role(r)?;
        }
        UserCommand::Revoke { namespace: n, .. } => {
            namespace(n)?;
        }
        _ => {}
    }
    let registry = etcd_direct(ctx, "user").await?;
    match command {
        UserCommand::Add { name, superadmin } => {
            registry.add_user(&name, superadmin).await.map_err(line)?;
        }
        UserCommand::List => {
            out("USER\tSUPERADMIN\tROLES")?;
            for (name, record) in registry
                .list_users()
                .await
                .map_err(|e| fail(registry_error_line(&e)))?
            {
                let roles: Vec<String> = record
                    .grants
                    .iter()
                    .map(|(ns, r)| format!("{ns}={r}"))
                    .collect();
                let roles = if roles.is_empty() {
                    "-".to_string()
                } else {
                    roles.join(",")
                };
                out(format!("{name}\t{}\t{roles}", record.superadmin))?;
            }
        }
        UserCommand::Grant {
            name,
            namespace: n,
            role: r,
        } => {
            registry
                .set_grant(&name, &namespace(&n)?, Some(role(&r)?))
                .await
                .map_err(line)?;
        }
        UserCommand::Revoke { name, namespace: n } => {
            registry
                .set_grant(&name, &namespace(&n)?, None)
                .await
                .map_err(line)?;
        }
        UserCommand::Remove { name } => {
            if !registry.remove_user(&name).await.map_err(line)? {
                return Err(fail(format!("user {name} does not exist")));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
