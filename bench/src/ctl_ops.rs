//! `fleet-bench ctl`: fleetctl's many-unit operations against a real etcd, old way and
//! new way in one run: `submit` of N units (the yardstick), `destroy` one txn per unit
//! (before) and batched (after), and what `stop`/`status` read to learn N units' states
//! among many others: the whole cluster (before) or only the units named (after).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use fleet_core::{TargetState, UnitFile, UnitName};
use fleet_registry::{Registry, RegistryConfig};
use fleet_testkit::{EtcdConfig, EtcdServer};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Units per command (the arguments of one fleetctl invocation).
    #[arg(long, default_value_t = 200)]
    units: usize,
    /// Other units in the cluster while `stop`/`status` read (the cluster's size).
    #[arg(long, default_value_t = 10_000)]
    others: usize,
    /// Runs of each measurement; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn unit(i: usize) -> Result<(UnitName, UnitFile)> {
    let name = UnitName::parse(&format!("ctl-{i:06}.service"))?;
    let file = UnitFile::parse(&format!(
        "[Unit]\nDescription=bench {i}\n\n[Service]\nExecStart=/bin/sleep {i}\n"
    ))?;
    Ok((name, file))
}

/// fleetctl submit: one batched read, then batched guarded creates.
async fn submit(reg: &Registry, units: &[(UnitName, UnitFile)]) -> Result<()> {
    let names: Vec<UnitName> = units.iter().map(|(n, _)| n.clone()).collect();
    reg.get_units(&names).await?;
    reg.create_units(units).await?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, Duration::as_secs_f64)
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(
        args.units > 0 && args.runs > 0,
        "--units and --runs must be at least 1"
    );
    let etcd = EtcdServer::start_with(&EtcdConfig::default()).context("starting etcd")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let reg = Registry::connect(RegistryConfig::new(etcd.client_url())).await?;
        let units: Vec<_> = (0..args.units).map(unit).collect::<Result<_>>()?;
        let names: Vec<UnitName> = units.iter().map(|(n, _)| n.clone()).collect();
        let (mut sub, mut one, mut batched) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            submit(&reg, &units).await?;
            sub.push(t.elapsed());
            // before: fleetctl's lookup, then one destroy txn per unit
            let t = Instant::now();
            reg.get_units(&names).await?;
            for n in &names {
                reg.destroy_unit(n).await?;
            }
            one.push(t.elapsed());
            submit(&reg, &units).await?;
            // after: the lookup, then 64 units per txn
            let t = Instant::now();
            reg.get_units(&names).await?;
            let existed = reg.destroy_units(&names).await?;
            batched.push(t.elapsed());
            ensure!(existed.iter().all(|e| *e), "a unit was not there to destroy");
        }
        // stop/status: learn the states of `units` among `others`.
        let others: Vec<_> = (args.units..args.units + args.others)
            .map(unit)
            .collect::<Result<_>>()?;
        for chunk in others.chunks(1000) {
            submit(&reg, chunk).await?;
        }
        submit(&reg, &units).await?;
        let all: Vec<(UnitName, TargetState)> = others
            .iter()
            .chain(&units)
            .map(|(n, _)| (n.clone(), TargetState::Launched))
            .collect();
        reg.set_targets(&all).await?;
        let (mut snap, mut views) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            let s = reg.snapshot().await?;
            snap.push(t.elapsed());
            ensure!(s.units.len() == args.units + args.others, "snapshot short");
            let t = Instant::now();
            let (_, v) = reg.unit_views(&names).await?;
            views.push(t.elapsed());
            ensure!(v.iter().all(Option::is_some), "views short");
        }
        let (sub, one, batched) = (median(sub), median(one), median(batched));
        let (snap, views) = (median(snap), median(views));
        println!(
            "{} units (median of {} runs): submit {sub:.3}s; destroy one txn per unit {one:.3}s, batched {batched:.3}s",
            args.units, args.runs
        );
        println!(
            "states of {} units among {}: whole-cluster snapshot {snap:.3}s, named units only {views:.3}s",
            args.units,
            args.units + args.others
        );
        let f = json!({
            "units": args.units,
            "others": args.others,
            "submit_s": sub,
            "destroy_per_unit_s": one,
            "destroy_batched_s": batched,
            "read_snapshot_s": snap,
            "read_named_s": views,
        });
        println!("{f}");
        Ok(())
    })
}
