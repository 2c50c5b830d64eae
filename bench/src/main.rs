//! fleet-bench: benchmarks that print human figures, then one JSON line (last) for tools.

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
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Scheduler(args) => scheduler::run(&args),
    }
}
