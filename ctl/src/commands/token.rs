//! `fleetctl token create|list|revoke`: bearer tokens for the API and the console,
//! stored in etcd as their hashes (see `fleet_registry::tokens`).

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::TokenCommand;
use crate::context::{Ctx, fail, out, registry_error_line};

/// The longest a token may live.
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

pub async fn run(ctx: &Ctx, command: TokenCommand) -> anyhow::Result<ExitCode> {
    // Checked before connecting: bad input changes nothing.
    if let TokenCommand::Create { role, ttl, user } = &command {
        check_create(role.as_deref().unwrap_or("viewer"), ttl, user)?;
    }
    let registry = etcd_direct(ctx, "token").await?;
    let line = |e: fleet_registry::RegistryError| fail(registry_error_line(&e));
    match command {
        TokenCommand::Create { role, ttl, user } => {
            // Without --role the token speaks for a registered person (`fleetctl user
            // add`), whose roles per namespace then apply; the stored role is only a
            // viewer's, what remains should the person be removed.
            let role = match role {
                Some(role) => role,
                None => {
                    let known = registry.get_user(&user).await.map_err(line)?;
                    if known.is_none() {
                        return Err(fail(format!(
                            "user {user} does not exist: add them with `fleetctl user add {user}` or give --role"
                        )));
                    }
                    "viewer".to_string()
                }
            };
            let ttl = check_create(&role, &ttl, &user)?;
            let (token, info) = registry
                .create_token(&user, &role, ttl)
                .await
                .map_err(line)?;
            out(token)?;
            crate::context::err(format!(
                "token {} for {user} ({role}) expires in {}",
                info.id,
                humantime::format_duration(ttl)
            ));
        }
        TokenCommand::List => {
            out("ID\t\tUSER\tROLE\tEXPIRES")?;
            for t in registry.list_tokens().await.map_err(line)? {
                let expires = std::time::UNIX_EPOCH + Duration::from_secs(t.record.expires);
                out(format!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.record.user,
                    t.record.role,
                    humantime::format_rfc3339_seconds(expires)
                ))?;
            }
        }
        TokenCommand::Revoke { id } => {
            if registry.revoke_token(&id).await.map_err(line)? == 0 {
                return Err(fail(format!("no token {id}")));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry in etcd for the commands that manage it directly (token, namespace,
/// user): refused, with what to do, when fleetctl is pointed at a fleet API.
pub async fn etcd_direct(ctx: &Ctx, what: &str) -> anyhow::Result<fleet_registry::Registry> {
    if crate::client::choose_driver(&ctx.global.driver, &ctx.global.endpoint)?
        == crate::client::Driver::Api
        && ctx.global.endpoint != crate::client::DEFAULT_API_ENDPOINT
    {
        return Err(fail(format!(
            "fleetctl {what} talks to etcd, not to a fleet API ({}): use --driver=etcd --endpoint=<etcd URL>",
            ctx.global.endpoint
        )));
    }
    let timeout = Duration::from_secs_f64(ctx.global.request_timeout.clamp(0.1, 3600.0));
    crate::client::etcd_registry(&ctx.global, timeout).await
}

fn check_create(role: &str, ttl: &str, user: &str) -> anyhow::Result<Duration> {
    if fleet_api::Role::from_name(role).is_none() {
        return Err(fail(format!(
            "invalid --role {role:?}: viewer, operator or admin"
        )));
    }
    if user.is_empty() || user.chars().any(|c| c.is_control()) {
        return Err(fail(format!("invalid --user {user:?}")));
    }
    let ttl =
        humantime::parse_duration(ttl).map_err(|e| fail(format!("invalid --ttl {ttl:?}: {e}")))?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(fail(format!(
            "invalid --ttl: between 1s and {}",
            humantime::format_duration(MAX_TTL)
        )));
    }
    Ok(ttl)
}
