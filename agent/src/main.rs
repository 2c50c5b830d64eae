//! fleetd: runs the agent on every machine and the engine while it holds leadership.

use std::process::ExitCode;

use fleetd::config::{Config, parse_command_line};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cl = match parse_command_line(&args) {
        Ok(cl) => cl,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    if cl.version {
        println!("fleetd version {}", fleet_core::VERSION);
        return ExitCode::SUCCESS;
    }
    let (config, warnings) = match Config::load(&cl, std::env::vars()) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("fleetd: {err}");
            return ExitCode::FAILURE;
        }
    };
    for w in warnings {
        eprintln!("fleetd: {w}");
    }
    let _ = config;
    eprintln!("fleetd: the agent is not implemented yet");
    ExitCode::FAILURE
}
