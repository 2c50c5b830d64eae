//! fleetctl's command line: fleet's commands and flags, parsed with clap.
//!
//! Flag names, defaults and `FLEETCTL_*` environment variables are fleet's (v1.0), so
//! existing scripts keep working; boolean flags accept Go's `--flag=false` form too.

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

/// The help heading of the flags every command accepts.
pub const GLOBAL_HEADING: &str = "Global options";

/// fleet's help layout for `fleetctl --help`.
const HELP_TEMPLATE: &str = "\
NAME:
\t{name} - {about}

USAGE:
\t{usage}

VERSION:
\t{version}

{all-args}{after-help}
";

/// fleet's help layout for `fleetctl COMMAND --help` (and `fleetctl help COMMAND`):
/// name and summary, usage, then the command's arguments and flags, the global flags
/// under their own heading, and the description with examples.
const COMMAND_TEMPLATE: &str = "\
NAME:
\tfleetctl COMMAND_NAME - {about}

USAGE:
\t{usage}

{all-args}{after-help}
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
    after_help = ROOT_AFTER_HELP,
    subcommand_help_heading = "COMMANDS",
    // fleet (pflag) let a repeated flag override the earlier one, e.g. an alias
    // `fleetctl --tunnel A` used as `fleetctl --tunnel B ...`.
    args_override_self = true,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags valid on every command, each also read from `FLEETCTL_<NAME>`. In help they
/// stand under their own heading, apart from a command's flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct GlobalFlags {
    /// Location of the fleet API if --driver=API. Alternatively, if --driver=etcd, location of the etcd API.
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_ENDPOINT",
        default_value = "unix:///var/run/fleet.sock"
    )]
    pub endpoint: String,
    /// The namespace whose units a command sees and changes (`default`: fleet's units).
    #[arg(
        long,
        global = true,
        env = "FLEETCTL_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// List commands: every namespace's units, with a NAMESPACE column.
    #[arg(long, global = true, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
          default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub all_namespaces: bool,
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
    /// Verify host keys presented by remote machines before initiating SSH connections
    /// (default true).
    #[arg(long, global = true, env = "FLEETCTL_STRICT_HOST_KEY_CHECKING", default_value = "true",
          value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
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
    /// User name for etcd's authentication (--driver=etcd).
    #[arg(long, global = true, env = "FLEETCTL_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    /// Password for etcd's authentication (--driver=etcd). A flag shows in the process
    /// list: prefer --etcd-password-file or FLEETCTL_ETCD_PASSWORD.
    #[arg(long, global = true, env = "FLEETCTL_ETCD_PASSWORD", hide_env_values = true,
          value_parser = secret)]
    pub etcd_password: Option<fleet_registry::Secret>,
    /// File whose first line is the password for etcd's authentication (--driver=etcd).
    #[arg(long, global = true, env = "FLEETCTL_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<String>,
    /// Print fleetctl's API requests (method, endpoint, duration, result) and other
    /// debug information to stderr.
    #[arg(long, global = true, env = "FLEETCTL_DEBUG", default_value = "false",
          value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub debug: bool,
    /// Deprecated; kept so old scripts still parse.
    #[arg(long, global = true, hide = true, env = "FLEETCTL_EXPERIMENTAL_API", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub experimental_api: bool,
}

/// A password flag's value, kept out of `Debug` output.
fn secret(s: &str) -> Result<fleet_registry::Secret, std::convert::Infallible> {
    Ok(fleet_registry::Secret::from(s))
}

/// Flags of the commands that wait for units to reach a state.
#[derive(Debug, Clone, Args)]
pub struct BlockFlags {
    /// Wait until the units reach the requested state, performing up to N attempts (2 s
    /// each) before giving up; 0 or less waits without limit. Does not apply to global
    /// units.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub block_attempts: i64,
    /// Do not wait until the units have reached the requested state before exiting.
    /// Always the case for global units.
    #[arg(long, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
          default_value = "false", num_args = 0..=1, require_equals = true,
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
    /// Replace a unit in the cluster whose content differs from the local unit file
    /// (only in states this command may change; the unit is then scheduled anew).
    #[arg(long, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
          default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub replace: bool,
    /// Deprecated and ignored (signed units are gone).
    #[arg(long, hide = true, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub sign: bool,
}

/// How the list commands and `status` print: fleet's table, or JSON (one object per
/// row, one per line; the schema is in README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// `--output`/`-o` of the list commands and `status`.
#[derive(Debug, Clone, Args)]
pub struct OutputFlag {
    /// Output format: `table` (fleet's) or `json` (one JSON object per row and line,
    /// with a fixed schema; --fields, --sort and --full do not apply).
    #[arg(long, short = 'o', value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Flags of the list commands.
#[derive(Debug, Clone, Args)]
pub struct TableFlags {
    /// Do not print a legend (column headers).
    #[arg(long, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
          default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_legend: bool,
    /// Columns to print, comma-separated (the valid fields and defaults are listed per
    /// command).
    #[arg(long, value_name = "FIELDS")]
    pub fields: Option<String>,
    /// Sort rows by this column (one of the printed fields) instead of the default order.
    #[arg(long, value_name = "FIELD")]
    pub sort: Option<String>,
    #[command(flatten)]
    pub output: OutputFlag,
}

/// `--full`/`-l`: do not shorten machine ids and hashes.
#[derive(Debug, Clone, Args)]
pub struct FullFlag {
    /// Do not ellipsize fields on output (whole machine ids and hashes).
    #[arg(long, short = 'l', alias = "l", value_name = "BOOL", hide_default_value = true,
          hide_possible_values = true, default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new())]
    pub full: bool,
}

/// `--ssh-port`: where sshd listens on the cluster's machines.
#[derive(Debug, Clone, Args)]
pub struct SshPortFlag {
    /// Connect to remote hosts over SSH using this TCP port.
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub ssh_port: u16,
}

/// Units named by the user for the commands that create them from files.
#[derive(Debug, Clone, Args)]
pub struct UnitFiles {
    /// Unit files to submit, or names of units already in the cluster. A name without a
    /// unit suffix gets `.service` (foo is foo.service); the unit's name is the file's
    /// name (dir/foo.service is foo.service); an instance foo@1.service is made from the
    /// template foo@.service in the cluster or next to it.
    #[arg(value_name = "UNIT", add = crate::completion::unit_files())]
    pub units: Vec<String>,
}

/// Units already in the cluster, named by the user.
#[derive(Debug, Clone, Args)]
pub struct UnitNames {
    /// Names of units in the cluster. A name without a unit suffix gets `.service` (foo
    /// is foo.service); a path counts by its file name (dir/foo.service is
    /// foo.service), so shell globs over a directory of unit files work.
    #[arg(value_name = "UNIT", add = crate::completion::unit_names())]
    pub units: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload one or more units to the cluster without starting them.
    Submit {
        #[command(flatten)]
        create: CreateFlags,
        #[command(flatten)]
        units: UnitFiles,
    },
    /// Schedule one or more units in the cluster, first submitting them if necessary.
    Load {
        #[command(flatten)]
        create: CreateFlags,
        #[command(flatten)]
        block: BlockFlags,
        #[command(flatten)]
        units: UnitFiles,
    },
    /// Instruct systemd to start one or more units in the cluster, first submitting and loading if necessary.
    Start {
        #[command(flatten)]
        create: CreateFlags,
        #[command(flatten)]
        block: BlockFlags,
        #[command(flatten)]
        units: UnitFiles,
    },
    /// Instruct systemd to stop one or more units in the cluster.
    Stop {
        #[command(flatten)]
        block: BlockFlags,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Unschedule one or more units in the cluster.
    Unload {
        #[command(flatten)]
        block: BlockFlags,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Destroy one or more units in the cluster.
    Destroy {
        /// Accepted for compatibility: destroy does not wait (nor did fleet's).
        #[command(flatten)]
        _block: IgnoredBlockFlags,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Output the contents of a submitted unit.
    Cat {
        #[command(flatten)]
        units: UnitNames,
    },
    /// List the units that exist in the cluster.
    ListUnitFiles {
        #[command(flatten)]
        table: TableFlags,
        /// Do not ellipsize fields on output (whole machine ids and hashes).
        #[arg(long, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
              default_value = "false", num_args = 0..=1, require_equals = true,
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
    /// Move every unit off a machine and keep new ones away, until undrain.
    Drain {
        /// The machine (an id or a unique prefix of one).
        #[arg(value_name = "MACHINE", add = crate::completion::machine_ids())]
        machine: String,
        #[command(flatten)]
        block: BlockFlags,
    },
    /// Let a drained machine take units again.
    Undrain {
        /// The machine (an id or a unique prefix of one).
        #[arg(value_name = "MACHINE", add = crate::completion::machine_ids())]
        machine: String,
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
        #[command(flatten)]
        output: OutputFlag,
        /// Accepted and ignored, as fleet did (its own tests pass --no-block to status).
        #[command(flatten)]
        _block: IgnoredBlockFlags,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Restart one or more units in the cluster: stop each, wait until it is stopped,
    /// start it again and wait until it runs.
    Restart {
        #[command(flatten)]
        block: BlockFlags,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Print the journal of a unit in the cluster to stdout.
    Journal {
        /// Number of recent log lines to return.
        #[arg(long, value_name = "N", default_value_t = 10)]
        lines: u32,
        /// Continuously print new entries as they are appended to the journal.
        #[arg(long, short = 'f', alias = "f", value_name = "BOOL", hide_default_value = true,
              hide_possible_values = true, default_value = "false", num_args = 0..=1,
              require_equals = true, default_missing_value = "true",
              value_parser = BoolishValueParser::new())]
        follow: bool,
        /// Output mode, passed unaltered to journalctl on the unit's machine (short,
        /// short-iso, verbose, json, cat, ...).
        #[arg(long, value_name = "MODE", default_value = "short")]
        output: String,
        /// Accepted for compatibility: fleetd reads the journal with its own rights.
        #[arg(long, value_name = "BOOL", hide_default_value = true, hide_possible_values = true,
              default_value = "false", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        sudo: bool,
        #[command(flatten)]
        ssh: SshPortFlag,
        #[command(flatten)]
        units: UnitNames,
    },
    /// Open interactive shell on a machine in the cluster.
    #[command(
        override_usage = "fleetctl ssh [OPTIONS] {MACHINE|UNIT} [OPTIONS] [[--] COMMAND...]\n\tfleetctl ssh [OPTIONS] --machine ID|--unit UNIT [[--] COMMAND...]"
    )]
    Ssh {
        /// Open SSH connection to a specific machine (an id or a unique prefix of one).
        #[arg(long, value_name = "ID", add = crate::completion::machine_ids())]
        machine: Option<String>,
        /// Open SSH connection to machine running provided unit.
        #[arg(long, value_name = "UNIT", add = crate::completion::unit_names())]
        unit: Option<String>,
        /// Forward local ssh-agent to target machine.
        #[arg(long, short = 'A', alias = "A", value_name = "BOOL", hide_default_value = true,
              hide_possible_values = true, default_value = "false", num_args = 0..=1,
              require_equals = true, default_missing_value = "true",
              value_parser = BoolishValueParser::new())]
        forward_agent: bool,
        #[command(flatten)]
        ssh: SshPortFlag,
        /// The machine (id or unique prefix) or unit to connect to, then the command to
        /// run there. fleetctl's flags may follow the target; put the command after `--`
        /// when it has options of its own.
        #[arg(value_name = "MACHINE|UNIT", add = crate::completion::machines_and_units())]
        args: Vec<String>,
    },
    /// Print a shell completion script (completes commands, flags, unit names and
    /// machine ids).
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Forward stdin/stdout to a unix socket (what `--tunnel` runs on the tunnel host).
    #[command(hide = true)]
    FdForward { args: Vec<String> },
    /// Bearer tokens for the API and the web console (these talk to etcd directly:
    /// its credentials are what make the caller admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create or update the cluster's etcd roles and users (idempotent); talks to etcd
    /// directly as an etcd root user.
    EtcdRoles(EtcdRolesArgs),
    /// Namespaces of units (these talk to etcd directly, as token does).
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// People and their roles per namespace (these talk to etcd directly).
    #[command(subcommand)]
    User(UserCommand),
    /// Print the version and exit.
    Version,
    /// DEPRECATED - No longer works.
    #[command(hide = true)]
    Verify { units: Vec<String> },
}

/// `fleetctl etcd-roles`: see `commands::etcd_roles`.
#[derive(Debug, Clone, Args)]
pub struct EtcdRolesArgs {
    /// A machine to create or update the etcd user of (fleet-machine-ID); repeat.
    #[arg(long = "machine", value_name = "ID")]
    pub machine: Vec<String>,
    /// A machine that may run the engine (also gets the fleet-engine role); repeat.
    #[arg(long = "engine-machine", value_name = "ID")]
    pub engine_machine: Vec<String>,
    /// A machine that serves the API (also gets the fleet-operator role); repeat.
    #[arg(long = "api-machine", value_name = "ID")]
    pub api_machine: Vec<String>,
    /// Give each --api-machine's API its own etcd user, fleet-api-<ID>, holding
    /// fleet-operator (fleet.conf's api_etcd_username), instead of granting
    /// fleet-operator to the machine's user.
    #[arg(long = "api-identity")]
    pub api_identity: bool,
    /// A person's etcd user with the fleet-operator role; repeat.
    #[arg(long, value_name = "NAME")]
    pub operator: Vec<String>,
    /// A person's etcd user with the fleet-viewer role; repeat.
    #[arg(long, value_name = "NAME")]
    pub viewer: Vec<String>,
    /// Where each user's password is read from or generated into (DIR/USER, mode 0600).
    #[arg(long, value_name = "DIR")]
    pub password_dir: Option<String>,
    /// Also create etcd's root user (password in DIR/root) and turn authentication on,
    /// when not connecting as a user already.
    #[arg(long)]
    pub enable_auth: bool,
    #[command(flatten)]
    pub namespaces: crate::commands::etcd_roles_ns::NsRolesArgs,
}

/// `fleetctl token ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown once; etcd keeps only its hash).
    Create {
        /// What the token may do: viewer, operator or admin. Without it, the token is
        /// a registered person's (`fleetctl user add`) and carries their namespace roles.
        #[arg(long)]
        role: Option<String>,
        /// How long it is valid (e.g. 30m, 8h, 7d).
        #[arg(long, default_value = "8h")]
        ttl: String,
        /// Who it is for, as logs and listings name them.
        #[arg(long, default_value = "console")]
        user: String,
    },
    /// List live tokens (their ids, never the tokens).
    List,
    /// Revoke the token with this id (as `fleetctl token list` shows it).
    Revoke { id: String },
}

/// `fleetctl namespace ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace, optionally bound to the machines matching a selector.
    Create {
        #[arg(value_name = "NAMESPACE")]
        name: String,
        /// Only machines with this metadata run the namespace's units (`team=a`,
        /// `team=a,zone=x`; values of one key are alternatives).
        #[arg(long, value_name = "SELECTOR", default_value = "")]
        machines: String,
    },
    /// Bind a namespace to other machines (an empty selector: every machine); the
    /// engine moves its units off machines that no longer match.
    Set {
        #[arg(value_name = "NAMESPACE")]
        name: String,
        /// Only machines with this metadata run the namespace's units (`team=b`).
        #[arg(long, value_name = "SELECTOR")]
        machines: String,
    },
    /// List the namespaces (default first) and the machines they are bound to.
    List,
    /// Delete a namespace; refused while it has units unless --destroy-units.
    Delete {
        #[arg(value_name = "NAMESPACE")]
        name: String,
        /// Destroy the namespace's units first.
        #[arg(long)]
        destroy_units: bool,
    },
}

/// `fleetctl user ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Add a person (the CN of their client certificate, or the --user of their tokens).
    Add {
        #[arg(value_name = "USER")]
        name: String,
        /// May do everything, in every namespace, and manage namespaces and users.
        #[arg(long)]
        superadmin: bool,
    },
    /// List people and their roles.
    List,
    /// Give USER a role in NAMESPACE: admin, user or viewer (replaces the old one).
    Grant {
        #[arg(value_name = "USER")]
        name: String,
        #[arg(value_name = "NAMESPACE")]
        namespace: String,
        #[arg(value_name = "ROLE")]
        role: String,
    },
    /// Take USER's role in NAMESPACE away.
    Revoke {
        #[arg(value_name = "USER")]
        name: String,
        #[arg(value_name = "NAMESPACE")]
        namespace: String,
    },
    /// Remove a person and all their roles.
    Remove {
        #[arg(value_name = "USER")]
        name: String,
    },
}

/// The shells `fleetctl completion` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Shown under `fleetctl --help`.
const ROOT_AFTER_HELP: &str = "\
Run 'fleetctl help COMMAND' (or 'fleetctl COMMAND --help') for a command's description,
examples and flags. Global options go before or after the command; each can also be set
with FLEETCTL_<NAME> (e.g. FLEETCTL_ENDPOINT, FLEETCTL_TUNNEL). When a flag is repeated,
the last one wins.";

/// Tips shared by the commands that reach machines over SSH.
const SSH_TIPS: &str = "\
SSH AND TUNNELS:
  fleetctl runs the system's ssh (override with FLEETCTL_SSH_COMMAND) as --ssh-username
  (default core), with host keys checked against --known-hosts-file unless
  --strict-host-key-checking=false.
  From a laptop, reach the cluster through any of its machines with --tunnel HOST[:PORT]
  (fleetctl must be installed there). Tip: alias it once,
    alias fleetctl='fleetctl --tunnel 10.10.10.10'
  and override it when needed: a later --tunnel wins.";

/// What `--fields` accepts on each list command: (valid fields, defaults).
pub const LIST_UNITS_FIELDS: (&[&str], &[&str]) = (
    &["unit", "machine", "active", "sub", "load", "hash"],
    &["unit", "machine", "active", "sub"],
);
pub const LIST_UNIT_FILES_FIELDS: (&[&str], &[&str]) = (
    &[
        "unit", "hash", "dstate", "state", "target", "desc", "global", "tmachine", "reason",
    ],
    &["unit", "hash", "dstate", "state", "target"],
);
pub const LIST_MACHINES_FIELDS: (&[&str], &[&str]) = (
    &["machine", "ip", "metadata", "drained"],
    &["machine", "ip", "metadata"],
);

/// `--fields` help naming the valid fields and the default.
fn fields_help((valid, defaults): (&[&str], &[&str]), what: &str) -> String {
    format!(
        "Columns to print for each {what}, comma-separated. Valid fields: {}. Default: {}",
        valid.join(","),
        defaults.join(",")
    )
}

/// Description and examples per command, shown after its flags.
fn long_help(command: &str) -> Option<String> {
    let text = match command {
        "submit" => "\
DESCRIPTION:
  Upload unit files to the cluster without loading or starting them, e.g. to check that
  they are valid. The command waits until each unit can be read back and prints
  `Unit NAME inactive`.

  Idempotent: a unit already in the cluster is not submitted again. If its content
  differs from the local file, a warning says so and the cluster's copy is kept unless
  --replace is given.

EXAMPLES:
  Submit a single unit:
    fleetctl submit foo.service
  Submit a directory of units with glob matching:
    fleetctl submit myservice/*
  Submit an instance of the template foo@.service:
    fleetctl submit foo@1.service"
            .to_string(),
        "load" => "\
DESCRIPTION:
  Schedule units onto machines and load them into systemd there, without starting them,
  submitting them first if needed. Units that are running are stopped (load asks for the
  `loaded` state).

  For units that are not global, fleetctl waits until each unit is loaded, printing
  `Unit NAME loaded on MACHINE`; tune this with --block-attempts and --no-block. Global
  units never block. Idempotent: a unit already loaded is left alone.

EXAMPLES:
  Load a single unit:
    fleetctl load foo.service
  Load a directory of units without waiting:
    fleetctl load --no-block myservice/*"
            .to_string(),
        "start" => "\
DESCRIPTION:
  Start units in the cluster, submitting and loading them first if needed. fleet picks a
  machine that satisfies each unit's [X-Fleet] requirements (MachineMetadata=,
  Conflicts=, MachineOf=, Global=, ...) and systemd starts the unit there.

  For units that are not global, fleetctl waits until each unit is launched and systemd
  reports it active, printing `Unit NAME launched on MACHINE`; tune this with
  --block-attempts and --no-block. Global units never block. Idempotent: a unit already
  launched is left alone. A unit that cannot be placed waits; see why with
    fleetctl list-unit-files --fields unit,dstate,target,reason

EXAMPLES:
  Start a single unit:
    fleetctl start foo.service
  Start an entire directory of units with glob matching:
    fleetctl start myservice/*
  Start three instances of the template foo@.service without waiting:
    fleetctl start --no-block foo@1 foo@2 foo@3"
            .to_string(),
        "stop" => "\
DESCRIPTION:
  Stop units from running but keep them on their machines (desired state `loaded`), so
  they can be started again. systemd stops them as their unit files say (ExecStop=).

  For units that are not global, fleetctl waits until each unit is stopped; tune this
  with --block-attempts and --no-block. Global units never block. A unit that is already
  stopped is skipped; a unit that is not on any machine (current state `inactive`) cannot
  be stopped: fleetctl says so and exits 1 without changing anything.

EXAMPLES:
  Stop a single unit:
    fleetctl stop foo.service
  Stop an entire directory of units with glob matching, without waiting:
    fleetctl stop --no-block myservice/*"
            .to_string(),
        "unload" => "\
DESCRIPTION:
  Unschedule units: stop them and remove them from their machines (desired state
  `inactive`). They stay in the cluster and can be loaded or started again.

  For units that are not global, fleetctl waits until each unit is unloaded; tune this
  with --block-attempts and --no-block. Idempotent: units already inactive are skipped.

EXAMPLES:
  Unload a single unit:
    fleetctl unload foo.service"
            .to_string(),
        "destroy" => "\
DESCRIPTION:
  Remove units from the cluster completely: their machines stop and unload them (as
  systemd's ExecStop= says) within a few seconds. A destroyed unit must be submitted
  again before it can be started. Destroying a unit that does not exist is not an error.

EXAMPLES:
  Destroy a single unit:
    fleetctl destroy foo.service
  Destroy all instances started from a directory:
    fleetctl destroy myservice/*"
            .to_string(),
        "drain" => "\
DESCRIPTION:
  Drain a machine: the engine moves every unit off it, honouring the units' rules
  (MachineOf=, Conflicts=, metadata), and places no unit there until `fleetctl undrain`.
  Global units stop there too. fleetd keeps running on the machine, and the drain
  outlives it leaving and coming back. `list-machines --fields=machine,ip,drained`
  shows drained machines. fleetctl waits until the machine runs none of the units it
  ran, printing where each went (--block-attempts bounds the wait; --no-block returns
  at once); units no other machine can take are named at the end.

EXAMPLES:
  fleetctl drain 2c4b1e8a
  fleetctl drain --no-block 2c4b1e8a
  fleetctl undrain 2c4b1e8a"
            .to_string(),
        "undrain" => "\
DESCRIPTION:
  End a drain: the machine takes units again. Units that moved away stay where they
  are (nothing moves without a reason); new units and units without a machine may be
  placed there.

EXAMPLES:
  fleetctl undrain 2c4b1e8a"
            .to_string(),
        "cat" => "\
DESCRIPTION:
  Print the unit file as stored in the cluster (its canonical form: comments and blank
  lines are not kept), e.g. to check which version of a unit runs.

EXAMPLES:
  fleetctl cat foo.service"
            .to_string(),
        "list-unit-files" => format!(
            "\
DESCRIPTION:
  List every unit in the cluster, loaded on a machine or not, one row per unit.

FIELDS:
  unit      the unit's name
  hash      hash of the unit's content (7 characters unless --full)
  dstate    desired state: inactive, loaded or launched
  state     current state on its machine (- for global units)
  target    the machine it is scheduled on, `global`, or - when not scheduled
  desc      the unit's Description=
  global    true for units with Global=true
  tmachine  deprecated name of `target`
  reason    why a unit that should run is not placed on any machine (e.g. no machine
            matches its MachineMetadata=, or it conflicts with units on every machine)
  Default: {}

EXAMPLES:
  fleetctl list-unit-files
  See why units are not running:
    fleetctl list-unit-files --fields unit,dstate,target,reason
  For scripts:
    fleetctl list-unit-files --no-legend --fields unit,state
    fleetctl list-unit-files -o json",
            LIST_UNIT_FILES_FIELDS.1.join(",")
        ),
        "list-units" => format!(
            "\
DESCRIPTION:
  List the state of the units loaded onto machines: one row per unit and machine, with
  systemd's load, active and sub state as that machine reports them.

FIELDS:
  unit     the unit's name
  machine  the machine reporting it (id.../ip; the whole id with --full)
  active   systemd's ActiveState (active, inactive, failed, activating, ...)
  sub      systemd's SubState (running, dead, exited, ...)
  load     systemd's LoadState (loaded, not-found, ...)
  hash     hash of the unit content loaded there (7 characters unless --full)
  Default: {}

EXAMPLES:
  For easily parsable output, remove the column headers:
    fleetctl list-units --no-legend
  Output the list without ellipses:
    fleetctl list-units --full
  Choose the columns to display:
    fleetctl list-units --fields=unit,machine
  One JSON object per row:
    fleetctl list-units -o json",
            LIST_UNITS_FIELDS.1.join(",")
        ),
        "list-machines" => format!(
            "\
DESCRIPTION:
  List the machines whose fleetd is alive. Machines that left (or whose fleetd stopped)
  are not listed.

FIELDS:
  machine   the machine id (8 characters and ... unless --full)
  ip        its public IP
  metadata  its metadata as key=value pairs
  Default: {}

EXAMPLES:
  For easily parsable output, remove the column headers:
    fleetctl list-machines --no-legend
  Output the list without truncation:
    fleetctl list-machines --full
  One JSON object per machine:
    fleetctl list-machines -o json",
            LIST_MACHINES_FIELDS.1.join(",")
        ),
        "status" => format!(
            "\
DESCRIPTION:
  Print `systemctl status` of units, as the machine running each unit reports it
  (fleetd there runs it), with a blank line between units. The exit status is the first
  non-zero one systemctl returned (3 for a unit that is not active). With -o json,
  prints the cluster's view of each unit instead (one object per unit and machine).

EXAMPLES:
  Show the status of a single unit:
    fleetctl status foo.service
  Show the status of an entire directory of units with glob matching:
    fleetctl status myservice/*
  A unit whose name starts with a dash:
    fleetctl status -- -foo.service

{SSH_TIPS}"
        ),
        "restart" => "\
DESCRIPTION:
  Restart units: stop each, wait until it is stopped, then start it and wait until it
  runs (a rolling restart, one unit after the other). Units that are loaded but stopped
  are started. systemd stops and starts them as their unit files say.

  Global units are restarted without waiting. Tune the waits with --block-attempts.

EXAMPLES:
  Restart a single unit:
    fleetctl restart foo.service
  Restart an entire directory of units with glob matching:
    fleetctl restart myservice/*"
            .to_string(),
        "journal" => format!(
            "\
DESCRIPTION:
  Print the journal of a unit, read on the machine running it. Does not work with
  global units.

EXAMPLES:
  Read the last 10 lines:
    fleetctl journal foo.service
  Read the last 100 lines:
    fleetctl journal --lines 100 foo.service
  Follow the journal until Ctrl-C:
    fleetctl journal -f foo.service

{SSH_TIPS}"
        ),
        "ssh" => format!(
            "\
DESCRIPTION:
  Open an interactive shell on a machine of the cluster, or on the machine running a
  unit, or run a command there. fleetctl finds out whether the argument is a machine
  (id or unique prefix) or a unit; --machine and --unit skip the guess. fleetctl's
  flags may come after the target; everything after `--` is the remote command.
  Does not work with global units.

EXAMPLES:
  Open a shell on a machine:
    fleetctl ssh 2444264c-eac2-4eff-a490-32d5e5e4af24
  Open a shell on the machine running a unit, from a laptop through a bastion:
    fleetctl --tunnel 10.10.10.10 ssh foo.service
  Forward the authentication agent:
    fleetctl ssh 2444264c -A
  Run a command (with options of its own) on the machine running a unit:
    fleetctl ssh foo.service -- ls -la /etc

{SSH_TIPS}"
        ),
        "completion" => "\
DESCRIPTION:
  Print a completion script for the shell. It completes commands and flags, and unit
  names and machine ids by asking the cluster (with the FLEETCTL_* settings of the shell
  it runs in) when Tab is pressed.

EXAMPLES:
  bash:  echo 'source <(fleetctl completion bash)' >> ~/.bashrc
  zsh:   echo 'source <(fleetctl completion zsh)' >> ~/.zshrc
  fish:  fleetctl completion fish > ~/.config/fish/completions/fleetctl.fish"
            .to_string(),
        _ => return None,
    };
    Some(text)
}

/// fleetctl's command line: the derived definition plus each command's long help and
/// per-command `--fields` help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for sub in [
        "submit",
        "load",
        "start",
        "stop",
        "unload",
        "destroy",
        "cat",
        "list-unit-files",
        "list-units",
        "list-machines",
        "drain",
        "undrain",
        "status",
        "restart",
        "journal",
        "ssh",
        "completion",
    ] {
        if let Some(text) = long_help(sub) {
            cmd = cmd.mut_subcommand(sub, |c| c.after_help(text));
        }
    }
    for (sub, fields, what) in [
        ("list-units", LIST_UNITS_FIELDS, "unit"),
        ("list-unit-files", LIST_UNIT_FILES_FIELDS, "unit file"),
        ("list-machines", LIST_MACHINES_FIELDS, "machine"),
    ] {
        cmd = cmd.mut_subcommand(sub, |c| {
            c.mut_arg("fields", |a| a.help(fields_help(fields, what)))
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for sub in subs {
        let template = COMMAND_TEMPLATE.replace("COMMAND_NAME", &sub);
        cmd = cmd.mut_subcommand(&sub, |c| c.help_template(template));
    }
    cmd
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

/// `fleetctl ssh TARGET ...`: fleetctl's flags (the command's and the global ones) may
/// follow the target, as with fleet; the first word that is not one of them (or `--`)
/// starts the remote command. A `--` is put before it, so clap leaves it and everything
/// after it to the remote command.
fn split_ssh_command(args: &mut Vec<String>) {
    let Some(start) = args.iter().position(|a| a == "ssh") else {
        return;
    };
    if args[..start].iter().any(|a| a == "--") {
        return;
    }
    let root = command();
    let Some(ssh) = root.find_subcommand("ssh") else {
        return;
    };
    // (name, takes a separate value) of every flag `ssh` accepts.
    let flags: Vec<(String, bool)> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .chain(ssh.get_arguments())
        .flat_map(|a| {
            let takes_value = a.get_action().takes_values() && !a.is_require_equals_set();
            let longs = a
                .get_long_and_visible_aliases()
                .unwrap_or_default()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .map(|l| format!("--{l}"));
            let shorts = a
                .get_short_and_visible_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(|c| format!("-{c}"));
            longs
                .chain(shorts)
                .map(move |f| (f, takes_value))
                .collect::<Vec<_>>()
        })
        .chain([("--help".to_string(), false), ("-h".to_string(), false)])
        .collect();
    let mut i = start + 1;
    let mut target_seen = false;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            return;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            let name = arg.split('=').next().unwrap_or(arg);
            match flags.iter().find(|(f, _)| f == name) {
                Some((_, takes_value)) => {
                    i += if *takes_value && !arg.contains('=') {
                        2
                    } else {
                        1
                    };
                    continue;
                }
                None => break,
            }
        }
        // The first plain word is the target (unless --machine/--unit name it);
        // the next one starts the command.
        let named = args[start + 1..i]
            .iter()
            .any(|a| a.starts_with("--machine") || a.starts_with("--unit"));
        if target_seen || named {
            break;
        }
        target_seen = true;
        i += 1;
    }
    if i < args.len() {
        args.insert(i, "--".to_string());
    }
}

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
        // `fleetctl help --help` is help about `help`, as in fleet.
        if i == 2 && out[1] == "help" && (arg == "--help" || arg == "-h") {
            out.push("help".to_string());
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
    split_ssh_command(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_etcd_password_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from([
            "fleetctl",
            "--etcd-username=root",
            "--etcd-password=hunter2-secret",
            "list-units",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        let password = cli.global.etcd_password.as_ref().map(|p| p.expose());
        assert_eq!(password, Some("hunter2-secret"));
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
    fn ssh_command_is_split_from_fleetctls_flags() {
        let cases: [(&[&str], &[&str]); 6] = [
            (
                &["ssh", "m1", "--ssh-port", "2222"],
                &["ssh", "m1", "--ssh-port", "2222"],
            ),
            (
                &["ssh", "m1", "-A", "uptime", "-p"],
                &["ssh", "m1", "-A", "--", "uptime", "-p"],
            ),
            (&["ssh", "m1", "-x"], &["ssh", "m1", "--", "-x"]),
            (&["ssh", "m1", "--", "-v"], &["ssh", "m1", "--", "-v"]),
            (
                &[
                    "--endpoint",
                    "x",
                    "ssh",
                    "--unit",
                    "u",
                    "ls",
                    "--tunnel",
                    "t",
                ],
                &[
                    "--endpoint",
                    "x",
                    "ssh",
                    "--unit",
                    "u",
                    "--",
                    "ls",
                    "--tunnel",
                    "t",
                ],
            ),
            (
                &["ssh", "m1", "--tunnel", "t", "--forward-agent=true", "ls"],
                &[
                    "ssh",
                    "m1",
                    "--tunnel",
                    "t",
                    "--forward-agent=true",
                    "--",
                    "ls",
                ],
            ),
        ];
        for (args, want) in cases {
            let argv = std::iter::once("fleetctl").chain(args.iter().copied());
            let got = normalize_args(argv.map(String::from));
            assert_eq!(got[1..], *want, "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_valid() {
        command().debug_assert();
    }
}
