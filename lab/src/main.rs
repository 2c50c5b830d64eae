//! `fleet-lab`: boot and drive a cluster of container machines on this host.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_lab::config::DEFAULT_FILE;
use fleet_lab::{ClusterConfig, Lab, LabEvent, LabName, UpOptions, running_labs};

/// A one-host cluster of systemd-nspawn machines running fleetd, with a real etcd.
#[derive(Parser)]
#[command(name = "fleet-lab", version)]
struct Cli {
    /// Cluster file.
    #[arg(long, short = 'c', global = true, default_value = DEFAULT_FILE, env = "FLEET_LAB_CONFIG")]
    config: PathBuf,
    /// Lab to act on (default: the cluster file's name, else the only running lab).
    #[arg(long, short = 'n', global = true, env = "FLEET_LAB_NAME")]
    name: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster file commands.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Build (or reuse) the image and boot every machine.
    Up {
        /// fleetd binary to bind-mount (default: next to fleet-lab).
        #[arg(long, env = "FLEET_LAB_FLEETD")]
        fleetd: Option<PathBuf>,
        /// fleetctl binary to bind-mount (default: next to fleet-lab).
        #[arg(long, env = "FLEET_LAB_FLEETCTL")]
        fleetctl: Option<PathBuf>,
        /// Seconds every machine may take to boot.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// No CA, TLS or etcd auth: plaintext everywhere (overrides the cluster file's
        /// `secure`).
        #[arg(long)]
        insecure: bool,
    },
    /// Tear the lab down (idempotent).
    Down,
    /// Show the labs' machines, IPs and systemd states.
    Status,
    /// A login shell inside a machine.
    Ssh { node: String },
    /// Run a command inside a machine.
    Exec {
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Hard machine loss: SIGKILL the machine.
    Kill { node: String },
    /// Network partition: take the machine's link down.
    Cut { node: String },
    /// End a partition.
    Heal { node: String },
    /// A bad link: latency on the machine's etcd traffic and/or packet loss.
    Degrade {
        node: String,
        /// Added each way to its etcd connections, Go-style (300ms, 1s).
        #[arg(long)]
        delay: Option<String>,
        /// Percent of its packets dropped, both ways (1-100).
        #[arg(long)]
        loss: Option<u8>,
    },
    /// Ends a degradation.
    Restore { node: String },
    /// The latency relay `degrade` starts (internal).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        lab_dir: PathBuf,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        delay_ms: u64,
    },
    /// A hung fleetd: SIGSTOP fleet.service in the machine (units keep running).
    Pause { node: String },
    /// Ends a pause: SIGCONT fleet.service.
    Resume { node: String },
    /// Reboot a machine (killed, then booted again with the same id and IP).
    Restart { node: String },
    /// The lab's etcd members: status, and faults one member at a time.
    Etcd {
        #[command(subcommand)]
        command: EtcdCmd,
    },
    /// Print the Debian mirror images are built from (FLEET_LAB_MIRROR, else the host's
    /// apt sources).
    Mirror {
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
    },
}

#[derive(Subcommand)]
enum EtcdCmd {
    /// Each member: IP, process, network, and which one is the raft leader.
    Status,
    /// Hard loss of a member (SIGKILL); its data stays.
    Kill { member: String },
    /// Orderly stop of a member (SIGTERM).
    Stop { member: String },
    /// Start a killed or stopped member again with its data.
    Start { member: String },
    /// Cut a member off the network (peers and clients).
    Cut { member: String },
    /// End a member's cut.
    Heal { member: String },
    /// Print the raft leader's member name.
    Leader,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Write a default cluster file.
    Create {
        #[arg(long, short = 'm', default_value_t = 3)]
        machines: usize,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fleet-lab: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Cmd::Config {
            command: ConfigCmd::Create { machines, force },
        } => {
            if cli.config.exists() && !force {
                bail!("{} exists (use --force to overwrite)", cli.config.display());
            }
            let name = cli.name.clone().unwrap_or_else(|| "lab".to_string());
            let config = ClusterConfig::with_machines(&name, *machines);
            config.validate()?;
            std::fs::write(&cli.config, config.to_toml())
                .with_context(|| format!("cannot write {}", cli.config.display()))?;
            println!(
                "wrote {} ({machines} machines, lab {name:?})",
                cli.config.display()
            );
            Ok(0)
        }
        Cmd::Up {
            fleetd,
            fleetctl,
            timeout,
            insecure,
        } => up(&cli, fleetd.clone(), fleetctl.clone(), *timeout, *insecure),
        Cmd::Down => {
            let name = lab_name(&cli)?;
            Lab::destroy(&name)?;
            println!("lab {name} is down");
            Ok(0)
        }
        Cmd::Status => status(&cli),
        Cmd::Ssh { node } => {
            let lab = Lab::attach(&lab_name(&cli)?)?;
            let status = lab.command(node, "/bin/bash")?.arg("-l").status()?;
            Ok(status.code().unwrap_or(1))
        }
        Cmd::Exec { node, command } => {
            let lab = Lab::attach(&lab_name(&cli)?)?;
            let (program, args) = command.split_first().context("exec needs a command")?;
            let status = lab.command(node, program)?.args(args).status()?;
            Ok(status.code().unwrap_or(1))
        }
        Cmd::Kill { node } => {
            Lab::attach(&lab_name(&cli)?)?.kill(node)?;
            println!("{node} killed");
            Ok(0)
        }
        Cmd::Cut { node } => {
            Lab::attach(&lab_name(&cli)?)?.cut(node)?;
            println!("{node} cut off the network");
            Ok(0)
        }
        Cmd::Heal { node } => {
            Lab::attach(&lab_name(&cli)?)?.heal(node)?;
            println!("{node} back on the network");
            Ok(0)
        }
        Cmd::Restart { node } => {
            let secs = Lab::attach(&lab_name(&cli)?)?.restart(node, Duration::from_secs(60))?;
            println!("{node} running again in {secs:.2} s");
            Ok(0)
        }
        Cmd::Degrade { node, delay, loss } => {
            let delay = delay
                .as_deref()
                .map(|d| parse_delay(d).with_context(|| format!("--delay {d:?}")))
                .transpose()?;
            if delay.is_none() && loss.is_none() {
                bail!("degrade needs --delay and/or --loss");
            }
            Lab::attach(&lab_name(&cli)?)?.degrade(node, delay, *loss)?;
            println!("{node}: link degraded");
            Ok(0)
        }
        Cmd::Restore { node } => {
            Lab::attach(&lab_name(&cli)?)?.restore(node)?;
            println!("{node}: link restored");
            Ok(0)
        }
        Cmd::Relay {
            lab_dir,
            listen,
            to,
            delay_ms,
        } => {
            fleet_lab::link::run_relay(
                lab_dir.clone(),
                *listen,
                *to,
                Duration::from_millis((*delay_ms).min(10_000)),
            )?;
            Ok(0)
        }
        Cmd::Pause { node } => {
            Lab::attach(&lab_name(&cli)?)?.pause(node)?;
            println!("fleetd on {node} paused (SIGSTOP)");
            Ok(0)
        }
        Cmd::Resume { node } => {
            Lab::attach(&lab_name(&cli)?)?.resume(node)?;
            println!("fleetd on {node} resumed (SIGCONT)");
            Ok(0)
        }
        Cmd::Etcd { command } => etcd(&cli, command),
        Cmd::Mirror { suite } => {
            println!("{}", fleet_lab::rootfs::mirror(suite)?);
            Ok(0)
        }
    }
}

fn up(
    cli: &Cli,
    fleetd: Option<PathBuf>,
    fleetctl: Option<PathBuf>,
    timeout: u64,
    insecure: bool,
) -> Result<i32> {
    let mut config = ClusterConfig::load(&cli.config)?;
    if insecure {
        config.secure = false;
    }
    if let Some(name) = &cli.name {
        config.name = name.clone();
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut opts = UpOptions::with_binaries_in(&exe_dir);
    if let Some(path) = fleetd {
        opts.fleetd = path;
    }
    if let Some(path) = fleetctl {
        opts.fleetctl = Some(path);
    }
    opts.boot_timeout = Duration::from_secs(timeout);
    opts.detach = true;
    let machines = config.machines().len();
    let started = std::time::Instant::now();
    let mut running = 0;
    let lab = Lab::up(&config, &opts, &mut |event| match event {
        LabEvent::BuildingImage(path) => eprintln!(
            "building the machine image {} with debootstrap (once; a minute or two)...",
            path.display()
        ),
        LabEvent::ImageReady(path) => eprintln!("image {}", path.display()),
        LabEvent::EtcdReady { url } => eprintln!("etcd ready at {url}"),
        LabEvent::MachineStarting { name, ip } => eprintln!("  {name:<12} {ip:<15} booting"),
        LabEvent::MachineRunning { name, secs } => {
            running += 1;
            eprintln!("  {name:<12} running after {secs:.2} s  [{running}/{machines}]");
        }
    })?;
    println!(
        "lab {} up: {machines} machines in {:.2} s",
        lab.name(),
        started.elapsed().as_secs_f64()
    );
    println!("point fleetctl at it:  source {}", lab.env_file().display());
    if lab.security().is_some() {
        println!(
            "secure: etcd over TLS with auth, the API over mutual TLS; the env file holds the host's admin identity"
        );
    }
    lab.detach();
    Ok(0)
}

/// `status`: a table per lab. Printed in one write, quietly ending on a closed pipe
/// (`fleet-lab status | head`).
/// A Go-style duration (`300ms`, `1.5s`) of at most 10 s: a delay for `degrade`.
fn parse_delay(text: &str) -> Result<Duration> {
    let delay = fleet_core::duration::parse_duration(text)?;
    if delay > fleet_lab::link::MAX_DELAY {
        bail!("must be at most {:?}", fleet_lab::link::MAX_DELAY);
    }
    Ok(delay)
}

fn etcd(cli: &Cli, command: &EtcdCmd) -> Result<i32> {
    let mut lab = Lab::attach(&lab_name(cli)?)?;
    match command {
        EtcdCmd::Status => {
            let mut text = format!(
                "{:<6} {:<12} {:<15} {:<8} {:<8} {:<8} LEADER\n",
                "MEMBER", "MACHINE", "IP", "PROCESS", "NETWORK", "ANSWERS"
            );
            for m in lab.etcd_members() {
                text.push_str(&format!(
                    "{:<6} {:<12} {:<15} {:<8} {:<8} {:<8} {}\n",
                    m.name,
                    m.machine.as_deref().unwrap_or("-"),
                    m.ip.to_string(),
                    if m.running { "running" } else { "down" },
                    if m.cut { "cut" } else { "ok" },
                    if m.answers { "yes" } else { "no" },
                    if m.leader { "*" } else { "" },
                ));
            }
            print_quietly(&text);
        }
        EtcdCmd::Leader => match lab.etcd_leader() {
            Some(name) => println!("{name}"),
            None => bail!("no etcd member is raft leader now (quorum lost?)"),
        },
        EtcdCmd::Kill { member } => {
            lab.etcd_kill(member)?;
            println!("etcd member {member} killed");
        }
        EtcdCmd::Stop { member } => {
            lab.etcd_stop(member)?;
            println!("etcd member {member} stopped");
        }
        EtcdCmd::Start { member } => {
            lab.etcd_start(member)?;
            println!("etcd member {member} running");
        }
        EtcdCmd::Cut { member } => {
            lab.etcd_cut(member, true)?;
            println!("etcd member {member} cut off the network");
        }
        EtcdCmd::Heal { member } => {
            lab.etcd_cut(member, false)?;
            println!("etcd member {member} back on the network");
        }
    }
    Ok(0)
}

fn status(cli: &Cli) -> Result<i32> {
    let mut text = String::new();
    macro_rules! outln {
        ($($arg:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!(text, $($arg)*);
        }};
    }
    let names = match lab_name(cli) {
        Ok(name) => vec![name],
        Err(_) => running_labs()
            .iter()
            .filter_map(|n| LabName::new(n).ok())
            .collect(),
    };
    if names.is_empty() {
        outln!("no lab is running");
        print_quietly(&text);
        return Ok(0);
    }
    for name in names {
        let lab = Lab::attach(&name)?;
        let state = lab.state();
        outln!(
            "lab {name}  subnet {}  etcd {}",
            state.subnet.map(|s| s.to_string()).unwrap_or_default(),
            lab.etcd_url().unwrap_or("-")
        );
        outln!(
            "  {:<12} {:<15} {:<32} {:<9} {:<7} ROLE",
            "MACHINE",
            "IP",
            "MACHINE-ID",
            "SYSTEMD",
            "NETWORK"
        );
        for m in lab.machines() {
            let systemd = lab.system_state_of(&m.name)?;
            let network = if m.cut { "cut" } else { "ok" };
            let role = if m.control { "control" } else { "worker" };
            outln!(
                "  {:<12} {:<15} {:<32} {systemd:<9} {network:<7} {role}",
                m.name,
                m.ip,
                m.machine_id
            );
        }
    }
    print_quietly(&text);
    Ok(0)
}

/// Writes to stdout, treating a reader that went away as success.
fn print_quietly(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The lab a command acts on: --name, else the cluster file's, else the only one running.
fn lab_name(cli: &Cli) -> Result<LabName> {
    if let Some(name) = &cli.name {
        return Ok(LabName::new(name)?);
    }
    if cli.config.exists() {
        return Ok(ClusterConfig::load(&cli.config)?.lab_name()?);
    }
    match running_labs().as_slice() {
        [one] => Ok(LabName::new(one)?),
        [] => bail!("no lab is running (and no {} here)", cli.config.display()),
        many => bail!(
            "several labs are running ({}): pick one with --name",
            many.join(", ")
        ),
    }
}
