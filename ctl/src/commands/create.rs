//! Creating units from fleetctl arguments (fleet behaviour §2.5), shared by submit, load
//! and start. Unlike fleet, every argument is resolved and validated before anything is
//! written, so one bad argument changes nothing.

use std::collections::HashMap;

use fleet_core::{Requirements, TargetState, UnitFile, UnitName};
use fleet_registry::CreateOutcome;

use crate::cli::CreateFlags;
use crate::context::{Ctx, err, fail, out};
use crate::unit_source::{local_template_path, read_local};

/// A unit named on the command line, after creation: what load/start act on.
pub struct NamedUnit {
    pub name: UnitName,
    pub global: bool,
    /// The desired state it had before this command (`None` if just created).
    pub previous: Option<TargetState>,
    /// Created by this command with the desired state asked for already written.
    pub target_written: bool,
}

/// What to do for one argument.
enum Plan {
    /// Not in the registry: create it from this text.
    Create(UnitFile),
    /// In the registry with other content, `--replace` given and allowed.
    Replace(UnitFile),
    /// In the registry: leave it.
    Keep,
}

/// Resolves every argument, then creates or replaces what needs it. `allowed` are the
/// desired states in which `--replace` may replace a unit (fleet's per-command sets);
/// units created here get `target` as their first desired state in the same write.
pub async fn create_units(
    ctx: &mut Ctx,
    args: &[String],
    flags: &CreateFlags,
    allowed: &[TargetState],
    target: TargetState,
) -> anyhow::Result<Vec<NamedUnit>> {
    let client = ctx.client().await?.clone();
    let registry = &client.registry;
    let fail_create = |e: &dyn std::fmt::Display| fail(format!("Error creating units: {e}"));
    // Names and paths first: an invalid name fails before any round trip.
    let mut args_named: Vec<(UnitName, String)> = Vec::with_capacity(args.len());
    for arg in args {
        let (name, path) = UnitName::from_arg(arg).map_err(|e| fail_create(&e))?;
        if !args_named.iter().any(|(n, _)| *n == name) {
            args_named.push((name, path));
        }
    }
    // One batched read for every named unit, one more for the templates of new instances.
    let names: Vec<UnitName> = args_named.iter().map(|(n, _)| n.clone()).collect();
    let existing = registry
        .get_units(&names)
        .await
        .map_err(|e| fail_create(&e))?;
    let mut templates: Vec<UnitName> = Vec::new();
    for ((name, _), unit) in args_named.iter().zip(&existing) {
        if let Some(t) = name
            .template()
            .filter(|t| unit.is_none() && !templates.contains(t))
        {
            templates.push(t);
        }
    }
    let registry_templates: HashMap<UnitName, UnitFile> = if templates.is_empty() {
        HashMap::new()
    } else {
        let found = registry
            .get_units(&templates)
            .await
            .map_err(|e| fail_create(&e))?;
        templates
            .into_iter()
            .zip(found)
            .filter_map(|(t, u)| Some((t, u?.file)))
            .collect()
    };

    let mut plans = Vec::with_capacity(args_named.len());
    for ((name, path), existing) in args_named.into_iter().zip(existing) {
        let local = read_local(&path).map_err(|e| fail_create(&e))?;
        let (plan, global, previous) = match existing {
            Some(unit) => {
                let global = requirements(&name, &unit.file)?.global;
                let plan = plan_existing(&name, &path, &unit, local, flags, allowed)?;
                (plan, global, Some(unit.target))
            }
            None => {
                let file = match local {
                    Some(file) => file,
                    None => body_from_template(&name, &path, &registry_templates)?,
                };
                let global = requirements(&name, &file)?.global;
                (Plan::Create(file), global, None)
            }
        };
        // A created or replaced unit starts over at `inactive`.
        let previous = if matches!(plan, Plan::Keep) {
            previous
        } else {
            None
        };
        plans.push((name, plan, global, previous));
    }

    // Writes: all creations in few txns, replacements one by one (rare).
    let creations: Vec<(UnitName, UnitFile)> = plans
        .iter()
        .filter_map(|(n, p, _, _)| match p {
            Plan::Create(f) => Some((n.clone(), f.clone())),
            _ => None,
        })
        .collect();
    let mut outcomes = registry
        .create_units(&creations, target)
        .await
        .map_err(|e| fail(format!("Error creating units: failed creating units: {e}")))?
        .into_iter();
    let mut named = Vec::with_capacity(plans.len());
    for (name, plan, global, previous) in plans {
        let mut target_written = false;
        match plan {
            Plan::Keep => {}
            Plan::Create(_) => match outcomes.next() {
                Some(CreateOutcome::Created) => {
                    target_written = true;
                    // As fleet, which created it `inactive` before asking for more.
                    out(format!("Unit {name} inactive"))?
                }
                // Someone created it between our read and our write: keep theirs.
                Some(CreateOutcome::Identical) | None => {}
                Some(CreateOutcome::Differs { .. }) => err(format!(
                    "WARNING: Unit {name} in registry differs from local unit file. Add --replace to override."
                )),
            },
            Plan::Replace(file) => {
                registry.replace_unit(&name, &file).await.map_err(|e| {
                    fail(format!(
                        "Error creating units: failed creating unit {name}: {e}"
                    ))
                })?;
                out(format!("Unit {name} inactive"))?;
            }
        }
        named.push(NamedUnit {
            name,
            global,
            previous,
            target_written,
        });
    }
    Ok(named)
}

/// Validates `[X-Fleet]` and warns about keys fleet does not know.
fn requirements(name: &UnitName, file: &UnitFile) -> anyhow::Result<Requirements> {
    let req = Requirements::parse(file).map_err(|e| fail(format!("Error creating units: {e}")))?;
    for key in &req.unrecognized {
        err(format!(
            "WARNING: Unit {name}: unrecognized requirement in [X-Fleet] section: {key:?}"
        ));
    }
    Ok(req)
}

/// fleet's rules for a name already in the registry: warn on differing content, replace
/// only with `--replace` and only in an allowed desired state.
fn plan_existing(
    name: &UnitName,
    path: &str,
    unit: &fleet_registry::UnitRecord,
    local: Option<UnitFile>,
    flags: &CreateFlags,
    allowed: &[TargetState],
) -> anyhow::Result<Plan> {
    let (local, from_template) = match local {
        Some(file) => (Some(file), None),
        None => match name.template() {
            Some(template) => {
                let tpl_path = local_template_path(path, &template);
                let file = read_local(&tpl_path)
                    .map_err(|e| fail(format!("Error creating units: {e}")))?;
                (file, Some(tpl_path))
            }
            None => (None, None),
        },
    };
    let Some(local) = local else {
        if flags.replace && !name.is_instance() {
            return Err(fail(format!(
                "error Unit {path} does not seem to be a template unit"
            )));
        }
        return Ok(Plan::Keep);
    };
    if local.hash() == unit.hash {
        if flags.replace {
            out(format!(
                "Found same Unit({name}) in Registry, nothing to do"
            ))?;
        }
        return Ok(Plan::Keep);
    }
    if !flags.replace {
        match from_template {
            Some(tpl_path) => err(format!(
                "WARNING: Unit {name} in registry differs from local template unit file {tpl_path}. Add --replace to override."
            )),
            None => err(format!(
                "WARNING: Unit {name} in registry differs from local unit file {path}. Add --replace to override."
            )),
        }
        return Ok(Plan::Keep);
    }
    if !allowed.contains(&unit.target) {
        err(format!(
            "Warning: can not replace Unit({name}) in state '{}', use the appropriate command",
            unit.target
        ));
        return Ok(Plan::Keep);
    }
    requirements(name, &local)?;
    Ok(Plan::Replace(local))
}

/// The text for a new instance: the registry's template wins over a local template file
/// (fleet's order), and the instance gets a verbatim copy.
fn body_from_template(
    name: &UnitName,
    path: &str,
    registry_templates: &HashMap<UnitName, UnitFile>,
) -> anyhow::Result<UnitFile> {
    let Some(template) = name.template() else {
        return Err(fail(format!(
            "Error creating units: unable to find Unit({name}) in Registry or on filesystem"
        )));
    };
    if let Some(file) = registry_templates.get(&template) {
        return Ok(file.clone());
    }
    let tpl_path = local_template_path(path, &template);
    match read_local(&tpl_path).map_err(|e| fail(format!("Error creating units: {e}")))? {
        Some(file) => Ok(file),
        None => Err(fail(format!(
            "Error creating units: failed getting Unit({path}) from template: unable to find template Unit({template}) in Registry or on filesystem"
        ))),
    }
}
