//! fleetctl's command line: fleet's commands and flags, parsed with clap.
//!
//! Flag names, defaults and `FLEETCTL_*` environment variables are fleet's (v1.0), so
//! existing scripts keep working; boolean flags accept Go's `--flag=false` form too.

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

const HELP_TEMPLATE: &str = "\
NAME:
\t{name} - {about}

USAGE:
\t{usage}

VERSION:
\t{version}

COMMANDS:
{subcommands}

GLOBAL OPTIONS:
{options}
";

/// fleetctl: control a fleet cluster.
#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    about = "fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system.",
    version = fleet_core::VERSION,
    disable_version_flag = true,
    infer_subcommands = true,
    help_template = HELP_TEMPLATE,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags valid on every command, each also read from `FLEETCTL_<NAME>`.
#[derive(Debug, Clone, Args)]
pub struct GlobalFlags {
    /// Location of the fleet API if --driver=API. Alternatively, if --driver=etcd, location of the etcd API.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_ENDPOINT",
        default_value = "unix:///var/run/fleet.sock"
    )]
    pub endpoint: String,
    /// Adapter used to execute fleetctl commands. Options include "API" and "etcd".
    #[arg(long, global = true, env = "FLEETCTL_DRIVER", default_value = "API")]
    pub driver: String,
    /// Keyspace for fleet data in etcd (development use only!).
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_ETCD_KEY_PREFIX",
        default_value = "/_coreos.com/fleet/"
    )]
    pub etcd_key_prefix: String,
    /// Amount of time in seconds to allow a single request before considering it failed.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_REQUEST_TIMEOUT",
        default_value_t = 3.0
    )]
    pub request_timeout: f64,
    /// Establish an SSH tunnel through the provided address for communication with fleet and etcd.
    #[arg(long, global = true, env = "FLEETCTL_TUNNEL")]
    pub tunnel: Option<String>,
    /// Username to use when connecting to CoreOS instance.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_SSH_USERNAME",
        default_value = "core"
    )]
    pub ssh_username: String,
    /// Amount of time in seconds to allow for SSH connection initialization before failing.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_SSH_TIMEOUT",
        default_value_t = 10.0
    )]
    pub ssh_timeout: f64,
    /// Verify host keys presented by remote machines before initiating SSH connections.
    #[arg(long, global = true, env = "FLEETCTL_STRICT_HOST_KEY_CHECKING", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub strict_host_key_checking: bool,
    /// File used to store remote machine fingerprints. Ignored if strict host key checking is disabled.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_KNOWN_HOSTS_FILE",
        default_value = "~/.fleetctl/known_hosts"
    )]
    pub known_hosts_file: String,
    /// Location of TLS key file used to secure communication with the fleet API or etcd.
    #[arg(long, global = true, env = "FLEETCTL_KEY_FILE", alias = "etcd-keyfile")]
    pub key_file: Option<String>,
    /// Location of TLS cert file used to secure communication with the fleet API or etcd.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_CERT_FILE",
        alias = "etcd-certfile"
    )]
    pub cert_file: Option<String>,
    /// Location of TLS CA file used to secure communication with the fleet API or etcd.
    #[arg(long, global = true, env = "FLEETCTL_CA_FILE", alias = "etcd-cafile")]
    pub ca_file: Option<String>,
    /// Print out more debug information to stderr.
    #[arg(long, global = true, env = "FLEETCTL_DEBUG", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub debug: bool,
    /// Deprecated; kept so old scripts still parse.
    #[arg(long, global = true, hide = true, env = "FLEETCTL_EXPERIMENTAL_API", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub experimental_api: bool,
}

/// Flags of the commands that wait for units to reach a state.
#[derive(Debug, Clone, Args)]
pub struct BlockFlags {
    /// Wait until the units are in the desired state, performing this many attempts (of 2 s
    /// each) before giving up; 0 or less waits indefinitely.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub block_attempts: i64,
    /// Do not wait until the units have reached the desired state before exiting.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_block: bool,
}

/// Blocking flags that commands without a wait accept and ignore, so scripts written
/// for fleet keep working.
#[derive(Debug, Clone, Args)]
pub struct IgnoredBlockFlags {
    #[arg(long = "block-attempts", hide = true, allow_negative_numbers = true)]
    pub block_attempts: Option<i64>,
    #[arg(long = "no-block", hide = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_block: Option<bool>,
}

/// Flags of the commands that create units from files.
#[derive(Debug, Clone, Args)]
pub struct CreateFlags {
    /// Replace the unit in the registry if it differs from the local unit file.
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub replace: bool,
    /// Deprecated and ignored (signed units are gone).
    #[arg(long, hide = true, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub sign: bool,
}

/// Flags of the list commands.
#[derive(Debug, Clone, Args)]
pub struct TableFlags {
    /// Do not print the legend (column headers).
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_legend: bool,
    /// Columns to print, comma-separated.
    #[arg(long)]
    pub fields: Option<String>,
    /// Sort rows by this column instead of the default order.
    #[arg(long)]
    pub sort: Option<String>,
}

/// `--full`/`-l`: do not shorten machine ids and hashes.
#[derive(Debug, Clone, Args)]
pub struct FullFlag {
    /// Do not ellipsize fields on output.
    #[arg(long, short = 'l', alias = "l", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub full: bool,
}

/// `--ssh-port`: where sshd listens on the cluster's machines.
#[derive(Debug, Clone, Args)]
pub struct SshPortFlag {
    /// Use this SSH port to connect to host.
    #[arg(long, default_value_t = 22)]
    pub ssh_port: u16,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload one or more units to the cluster without starting them.
    Submit {
        #[command(flatten)]
        create: CreateFlags,
        units: Vec<String>,
    },
    /// Schedule one or more units in the cluster, first submitting them if necessary.
    Load {
        #[command(flatten)]
        create: CreateFlags,
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Instruct systemd to start one or more units in the cluster, first submitting and loading if necessary.
    Start {
        #[command(flatten)]
        create: CreateFlags,
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Instruct systemd to stop one or more units in the cluster.
    Stop {
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Unschedule one or more units in the cluster.
    Unload {
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Destroy one or more units in the cluster.
    Destroy {
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Output the contents of a submitted unit.
    Cat { units: Vec<String> },
    /// List the units that exist in the cluster.
    ListUnitFiles {
        #[command(flatten)]
        table: TableFlags,
        /// Do not ellipsize fields on output.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        full: bool,
    },
    /// List the current state of units in the cluster.
    ListUnits {
        #[command(flatten)]
        table: TableFlags,
        #[command(flatten)]
        full: FullFlag,
    },
    /// Enumerate the current hosts in the cluster.
    ListMachines {
        #[command(flatten)]
        table: TableFlags,
        #[command(flatten)]
        full: FullFlag,
    },
    /// Output the status of one or more units in the cluster.
    Status {
        #[command(flatten)]
        ssh: SshPortFlag,
        /// Accepted and ignored, as fleet did (its own tests pass --no-block to status).
        #[command(flatten)]
        _block: IgnoredBlockFlags,
        units: Vec<String>,
    },
    /// Restart one or more units in the cluster: stop each, wait until it is stopped,
    /// start it again and wait until it runs.
    Restart {
        #[command(flatten)]
        block: BlockFlags,
        units: Vec<String>,
    },
    /// Print the journal of a unit in the cluster to stdout.
    Journal {
        /// Number of recent log lines to return.
        #[arg(long, default_value_t = 10)]
        lines: u32,
        /// Continuously print new entries as they are appended to the journal.
        #[arg(long, short = 'f', alias = "f", default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        follow: bool,
        /// Output mode. This will be passed unaltered to journalctl.
        #[arg(long, default_value = "short")]
        output: String,
        /// Accepted for compatibility: fleetd reads the journal with its own rights.
        #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        sudo: bool,
        #[command(flatten)]
        ssh: SshPortFlag,
        units: Vec<String>,
    },
    /// Open interactive shell on a machine in the cluster.
    Ssh {
        /// Open SSH connection to a specific machine.
        #[arg(long)]
        machine: Option<String>,
        /// Open SSH connection to machine running provided unit.
        #[arg(long)]
        unit: Option<String>,
        /// Forward local ssh-agent to target machine.
        #[arg(long, short = 'A', alias = "A", default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        forward_agent: bool,
        #[command(flatten)]
        ssh: SshPortFlag,
        /// MACHINE|UNIT, then the command to run there.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Forward stdin/stdout to a unix socket (what `--tunnel` runs on the tunnel host).
    #[command(hide = true)]
    FdForward { args: Vec<String> },
    /// Print the version and exit.
    Version,
    /// DEPRECATED - No longer works.
    #[command(hide = true)]
    Verify { units: Vec<String> },
}

/// Long flag names (without dashes) that old fleetctl (Go `flag`) accepted with a single
/// dash, e.g. `-no-block=true`, `-block-attempts=5`, `-full`. Rewritten to `--` forms.
const LEGACY_SINGLE_DASH: &[&str] = &[
    "endpoint",
    "driver",
    "etcd-key-prefix",
    "request-timeout",
    "tunnel",
    "ssh-username",
    "ssh-timeout",
    "strict-host-key-checking",
    "known-hosts-file",
    "key-file",
    "cert-file",
    "ca-file",
    "etcd-keyfile",
    "etcd-certfile",
    "etcd-cafile",
    "debug",
    "experimental-api",
    "block-attempts",
    "no-block",
    "replace",
    "sign",
    "no-legend",
    "fields",
    "sort",
    "full",
    "lines",
    "follow",
    "output",
    "sudo",
    "ssh-port",
    "machine",
    "unit",
    "forward-agent",
    "version",
    "help",
];

/// Normalises argv before clap sees it: single-dash long flags become double-dash, and
/// a leading `-v`/`--version` (fleet's version flags) becomes the `version` command.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut ended = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 1 && (arg == "-v" || arg == "--version" || arg == "-version") {
            out.push("version".to_string());
            continue;
        }
        if !ended && arg == "--" {
            ended = true;
        }
        if !ended && arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") {
            let name = arg[1..].split('=').next().unwrap_or("");
            if LEGACY_SINGLE_DASH.contains(&name) {
                out.push(format!("-{arg}"));
                continue;
            }
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn legacy_flags_are_rewritten() {
        assert_eq!(norm(&["fleetctl", "-v"]), ["fleetctl", "version"]);
        assert_eq!(
            norm(&["fleetctl", "start", "-no-block=true", "x"]),
            ["fleetctl", "start", "--no-block=true", "x"]
        );
        assert_eq!(
            norm(&["fleetctl", "list-units", "-l"]),
            ["fleetctl", "list-units", "-l"]
        );
        assert_eq!(
            norm(&["fleetctl", "ssh", "x", "--", "-full"]),
            ["fleetctl", "ssh", "x", "--", "-full"]
        );
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
