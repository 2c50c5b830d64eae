//! fleet-bench: benchmarks that print human figures, then one JSON line (last) for tools.
// The figures object of `cluster` is one `json!` literal, past the default depth.
#![recursion_limit = "256"]

mod cluster;
mod ctl_ops;
mod scheduler;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fleet-bench", about = "Benchmarks of fleet's parts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place units onto machines with the pure scheduler (one core, no I/O).
    Scheduler(scheduler::Args),
    /// Real etcd, the real engine and thousands of in-process agents on a simulated
    /// systemd: placement, start-up, etcd load, failover.
    Cluster(cluster::Args),
    /// fleetctl's many-unit commands against a real etcd: submit, destroy (one txn
    /// per unit and batched), and reading a few units' states (snapshot or named).
    Ctl(ctl_ops::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Scheduler(args) => scheduler::run(&args),
        Command::Ctl(args) => ctl_ops::run(&args),
        Command::Cluster(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            cluster::run(&args)
        }
    }
}
