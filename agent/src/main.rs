//! fleetd: runs the agent on every machine and the engine while it holds leadership.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args
        .get(1)
        .is_some_and(|a| a == "--version" || a == "-version" || a == "version")
    {
        println!("fleetd version {}", fleet_core::VERSION);
        return std::process::ExitCode::SUCCESS;
    }
    eprintln!("fleetd: the agent is not implemented yet");
    std::process::ExitCode::FAILURE
}
