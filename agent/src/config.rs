//! fleetd's configuration as CoreOS fleet users know it: `/etc/fleet/fleet.conf`,
//! `FLEET_<OPTION>` environment variables and `--<option>=value` flags, in that order of
//! increasing precedence, with fleet's option names and defaults. Unlike fleet, an unknown
//! option or a malformed value is an error at start-up, not silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where fleetd looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fleet/fleet.conf";

/// fleetd's settings after merging every source.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// >0 enables debug logging.
    pub verbosity: u32,
    pub etcd_servers: Vec<String>,
    pub etcd_username: Option<String>,
    /// Never printed: its `Debug` is `***`.
    pub etcd_password: Option<fleet_registry::Secret>,
    pub etcd_keyfile: Option<PathBuf>,
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_cafile: Option<PathBuf>,
    pub etcd_key_prefix: String,
    /// Bound on each etcd call, failover to another member included.
    pub etcd_request_timeout: Duration,
    pub engine_reconcile_interval: Duration,
    /// The engine leadership's lease TTL (renewed every third of it).
    pub engine_lease_ttl: Duration,
    /// Advertised IP; `None` (unset or empty) means detect it from the default route's
    /// interface.
    pub public_ip: Option<std::net::IpAddr>,
    pub metadata: BTreeMap<String, String>,
    /// Lease TTL of the machine and its unit states.
    pub agent_ttl: Duration,
    pub units_directory: PathBuf,
    /// Manage the user's systemd instance (session bus) instead of the system's.
    pub systemd_user: bool,
    /// Never campaign for the engine.
    pub disable_engine: bool,
    /// Every unit on this machine opts in to `StopOnEtcdLoss` (not fleet's option).
    pub stop_on_etcd_loss: bool,
    /// Overrides `/etc/machine-id` (several agents on one host in tests and benchmarks).
    pub machine_id: Option<String>,
    /// Where the machine id is read from when `machine_id` is not set.
    pub machine_id_file: PathBuf,
    /// The API's unix socket (`/var/run/fleet.sock`); empty for none. Sockets passed by
    /// systemd (`fleet.socket`, LISTEN_FDS) take precedence.
    pub api_socket: Option<PathBuf>,
    /// TCP addresses the API listens on (`ip:port`), none by default.
    pub api_listen: Vec<std::net::SocketAddr>,
    /// TLS certificate and key for the API's TCP listeners.
    pub api_tls_cert: Option<PathBuf>,
    pub api_tls_key: Option<PathBuf>,
    /// CA whose client certificates the API requires (mutual TLS) when set.
    pub api_tls_client_ca: Option<PathBuf>,
    /// Unix-socket peers in this group (name or gid) are API operators; root is admin,
    /// others viewers.
    pub api_operator_group: Option<String>,
    /// Serve plaintext TCP on non-loopback `api_listen` addresses (refused otherwise):
    /// every client is then admin, and fleetd warns.
    pub api_allow_plaintext: bool,
    /// A separate etcd user for the API (`api_etcd_username`, `api_etcd_password`):
    /// the API writes units, targets and drains with it, so the agent's and engine's
    /// identity (`etcd_username`) never needs `fleet-operator`. Unset: the API uses
    /// the machine's identity. TLS files are the `etcd_*` ones.
    pub api_etcd_username: Option<String>,
    /// Never printed: its `Debug` is `***`.
    pub api_etcd_password: Option<fleet_registry::Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            verbosity: 0,
            etcd_servers: vec![
                "http://127.0.0.1:2379".into(),
                "http://127.0.0.1:4001".into(),
            ],
            etcd_username: None,
            etcd_password: None,
            etcd_keyfile: None,
            etcd_certfile: None,
            etcd_cafile: None,
            etcd_key_prefix: "/_coreos.com/fleet/".into(),
            etcd_request_timeout: DEFAULT_ETCD_REQUEST_TIMEOUT,
            engine_reconcile_interval: Duration::from_secs(2),
            engine_lease_ttl: crate::engine::DEFAULT_LEASE_TTL,
            public_ip: None,
            metadata: BTreeMap::new(),
            agent_ttl: Duration::from_secs(30),
            units_directory: PathBuf::from("/run/fleet/units/"),
            systemd_user: false,
            disable_engine: false,
            stop_on_etcd_loss: false,
            machine_id: None,
            machine_id_file: PathBuf::from("/etc/machine-id"),
            api_socket: Some(PathBuf::from("/var/run/fleet.sock")),
            api_listen: Vec::new(),
            api_tls_cert: None,
            api_tls_key: None,
            api_tls_client_ca: None,
            api_operator_group: None,
            api_allow_plaintext: false,
            api_etcd_username: None,
            api_etcd_password: None,
        }
    }
}

/// A configuration that cannot be used; says which option and source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Unable to use config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("Provided config {0} is a directory, not a file")]
    IsDirectory(String),
    #[error("{source_name}: unknown option {name:?}")]
    Unknown { source_name: String, name: String },
    #[error("{source_name}: invalid value {value:?} for {name}: {why}")]
    Invalid {
        source_name: String,
        name: String,
        value: String,
        why: String,
    },
    #[error("{source_name}: line {line}: expected option=value")]
    Syntax { source_name: String, line: usize },
}

/// What an option does with its value.
enum Apply {
    /// Parses the value into the configuration; the error says why it is invalid.
    Set(fn(&mut Config, &str) -> Result<(), String>),
    /// fleet's option that this fleetd does not implement: validated, then ignored
    /// with a one-line warning, never silently.
    NotImplemented(fn(&str) -> Result<(), String>),
    /// fleet knew it but no longer uses it: accepted with a warning.
    Deprecated,
}

/// One fleet.conf option: its name (also `FLEET_<NAME>` and `--<name>`), whether a bare
/// `--<name>` flag means true, and what it does. The only place an option is spelled
/// (besides its `Config` field).
struct OptionSpec {
    name: &'static str,
    boolean: bool,
    apply: Apply,
}

const fn set(name: &'static str, f: fn(&mut Config, &str) -> Result<(), String>) -> OptionSpec {
    OptionSpec {
        name,
        boolean: false,
        apply: Apply::Set(f),
    }
}

const fn flag(name: &'static str, f: fn(&mut Config, &str) -> Result<(), String>) -> OptionSpec {
    OptionSpec {
        name,
        boolean: true,
        apply: Apply::Set(f),
    }
}

/// Every option fleetd accepts.
const OPTIONS: &[OptionSpec] = &[
    set("verbosity", |c, v| {
        c.verbosity = v.trim().parse().map_err(|_| "expected a whole number")?;
        Ok(())
    }),
    set("etcd_servers", |c, v| {
        c.etcd_servers = etcd_servers(v)?;
        Ok(())
    }),
    set("etcd_username", |c, v| {
        c.etcd_username = opt(v);
        Ok(())
    }),
    set("etcd_password", |c, v| {
        c.etcd_password = opt(v).map(fleet_registry::Secret::from);
        Ok(())
    }),
    set("etcd_keyfile", |c, v| {
        c.etcd_keyfile = opt(v).map(PathBuf::from);
        Ok(())
    }),
    set("etcd_certfile", |c, v| {
        c.etcd_certfile = opt(v).map(PathBuf::from);
        Ok(())
    }),
    set("etcd_cafile", |c, v| {
        c.etcd_cafile = opt(v).map(PathBuf::from);
        Ok(())
    }),
    set("etcd_key_prefix", |c, v| {
        if v.trim().is_empty() {
            return Err("must not be empty".into());
        }
        c.etcd_key_prefix = v.trim().to_string();
        Ok(())
    }),
    set("etcd_request_timeout", |c, v| {
        c.etcd_request_timeout = within(seconds(v)?, REQUEST_TIMEOUT_BOUNDS)?;
        Ok(())
    }),
    set("engine_lease_ttl", |c, v| {
        c.engine_lease_ttl = within(go_duration(v)?, ENGINE_LEASE_TTL_BOUNDS)?;
        Ok(())
    }),
    set("engine_reconcile_interval", |c, v| {
        c.engine_reconcile_interval = seconds(v)?;
        Ok(())
    }),
    set("public_ip", |c, v| {
        let ip = v.trim();
        c.public_ip = match ip {
            "" => None,
            ip => Some(ip.parse().map_err(|_| "expected an IP address")?),
        };
        Ok(())
    }),
    set("metadata", |c, v| {
        let metadata = fleet_core::machine::parse_metadata(v);
        // Readers refuse such a record as corrupt: refuse it here, before registering.
        for (k, v) in &metadata {
            let found = fleet_core::machine::metadata_control_char(k)
                .or_else(|| fleet_core::machine::metadata_control_char(v));
            if let Some(ch) = found {
                return Err(format!(
                    "metadata {k:?} holds control character U+{:04X}",
                    u32::from(ch)
                ));
            }
        }
        c.metadata = metadata;
        Ok(())
    }),
    set("agent_ttl", |c, v| {
        let ttl = go_duration(v)?;
        if ttl < MIN_AGENT_TTL {
            return Err("must be at least 1s".into());
        }
        c.agent_ttl = ttl;
        Ok(())
    }),
    set("units_directory", |c, v| {
        c.units_directory = PathBuf::from(v.trim());
        Ok(())
    }),
    flag("systemd_user", |c, v| {
        c.systemd_user = boolean(v)?;
        Ok(())
    }),
    OptionSpec {
        name: "token_limit",
        boolean: false,
        apply: Apply::NotImplemented(|v| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(drop)
                .ok_or_else(|| "expected a positive whole number".to_string())
        }),
    },
    OptionSpec {
        name: "enable_grpc",
        boolean: true,
        apply: Apply::NotImplemented(|v| boolean(v).map(drop)),
    },
    flag("disable_engine", |c, v| {
        c.disable_engine = boolean(v)?;
        Ok(())
    }),
    flag("stop_on_etcd_loss", |c, v| {
        c.stop_on_etcd_loss = boolean(v)?;
        Ok(())
    }),
    OptionSpec {
        name: "disable_watches",
        boolean: true,
        apply: Apply::NotImplemented(|v| boolean(v).map(drop)),
    },
    OptionSpec {
        name: "verify_units",
        boolean: true,
        apply: Apply::Deprecated,
    },
    OptionSpec {
        name: "authorized_keys_file",
        boolean: false,
        apply: Apply::Deprecated,
    },
    set("machine_id", |c, v| {
        c.machine_id = opt(v.trim());
        Ok(())
    }),
    set("machine_id_file", |c, v| {
        c.machine_id_file = PathBuf::from(v.trim());
        Ok(())
    }),
    set("api_socket", |c, v| {
        c.api_socket = opt(v.trim()).map(PathBuf::from);
        Ok(())
    }),
    set("api_listen", |c, v| {
        c.api_listen = v
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("{a:?} is not an ip:port address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }),
    set("api_tls_cert", |c, v| {
        c.api_tls_cert = opt(v.trim()).map(PathBuf::from);
        Ok(())
    }),
    set("api_tls_key", |c, v| {
        c.api_tls_key = opt(v.trim()).map(PathBuf::from);
        Ok(())
    }),
    set("api_tls_client_ca", |c, v| {
        c.api_tls_client_ca = opt(v.trim()).map(PathBuf::from);
        Ok(())
    }),
    set("api_operator_group", |c, v| {
        c.api_operator_group = opt(v.trim());
        Ok(())
    }),
    set("api_etcd_username", |c, v| {
        c.api_etcd_username = opt(v);
        Ok(())
    }),
    set("api_etcd_password", |c, v| {
        c.api_etcd_password = opt(v).map(fleet_registry::Secret::from);
        Ok(())
    }),
    flag("api_allow_plaintext", |c, v| {
        c.api_allow_plaintext = boolean(v)?;
        Ok(())
    }),
];

fn option(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// An empty value means "not set".
fn opt(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

/// `etcd_servers`: a comma-separated list of http(s) URLs, brackets and quotes allowed.
fn etcd_servers(value: &str) -> Result<Vec<String>, String> {
    let servers: Vec<String> = value
        .split(',')
        .map(|s| {
            s.trim_matches(|c: char| c == '[' || c == ']' || c == '"' || c.is_whitespace())
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err("expected a comma-separated list of URLs".into());
    }
    if let Some(bad) = servers
        .iter()
        .find(|s| !(s.starts_with("http://") || s.starts_with("https://")))
    {
        return Err(format!("{bad:?} is not an http:// or https:// URL"));
    }
    Ok(servers)
}

/// fleetd's `etcd_request_timeout` when not set: the registry's default (see there).
pub const DEFAULT_ETCD_REQUEST_TIMEOUT: Duration = fleet_registry::DEFAULT_REQUEST_TIMEOUT;
/// `etcd_request_timeout` accepted: long enough for one round trip on a slow link,
/// short enough that a call never seems to hang.
pub const REQUEST_TIMEOUT_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(60));
/// `engine_lease_ttl` accepted: etcd grants whole seconds; beyond a minute a dead
/// engine machine leaves the cluster without scheduling for too long.
pub const ENGINE_LEASE_TTL_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60));

/// `d` if it lies within `bounds` (inclusive), else why not.
fn within(d: Duration, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    if d < min || d > max {
        return Err(format!("must be between {min:?} and {max:?}"));
    }
    Ok(d)
}

/// The shortest `agent_ttl` (etcd leases are granted in whole seconds).
pub const MIN_AGENT_TTL: Duration = fleet_core::MIN_AGENT_TTL;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
pub struct CommandLine {
    pub config_path: Option<String>,
    pub version: bool,
    pub options: Vec<(String, String)>,
}

/// Parses fleetd's arguments: `--config PATH`, `--version`, and `--option=value` for
/// every fleet.conf option (dashes and underscores both accepted). fleetd takes no
/// positional arguments.
pub fn parse_command_line(args: &[String]) -> Result<CommandLine, String> {
    let mut cl = CommandLine::default();
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        if arg == "version" && cl.options.is_empty() {
            cl.version = true;
            continue;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!(
                "{} takes no arguments. Did you mean to invoke fleetctl instead?",
                args[0]
            ));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.replace('-', "_"), Some(v.to_string())),
            None => (flag.replace('-', "_"), None),
        };
        match name.as_str() {
            "version" | "v" => cl.version = true,
            "h" | "help" => return Err(USAGE.to_string()),
            "config" => {
                cl.config_path = Some(match value {
                    Some(v) => v,
                    None => it.next().cloned().ok_or("--config needs a path")?,
                })
            }
            _ => {
                let value = match value {
                    Some(v) => v,
                    None if is_bool_option(&name) => "true".to_string(),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                cl.options.push((name, value));
            }
        }
    }
    Ok(cl)
}

/// Usage text for `fleetd --help`.
pub const USAGE: &str = "usage: fleetd [--config=PATH] [--version] [--<option>=<value>...]
  Options are those of fleet.conf (e.g. --etcd_servers=http://10.0.0.1:2379 --metadata=region=west).
  Precedence: flags > FLEET_<OPTION> environment variables > config file > defaults.";

fn is_bool_option(name: &str) -> bool {
    option(&name.to_ascii_lowercase().replace('-', "_")).is_some_and(|o| o.boolean)
}

impl Config {
    /// Builds the configuration from file, environment and flags. Returns warnings
    /// (deprecated options) for the caller to log.
    pub fn load(
        cl: &CommandLine,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::default();
        let mut warnings = Vec::new();
        let path = cl.config_path.clone().or_else(|| {
            Path::new(DEFAULT_CONFIG_PATH)
                .exists()
                .then(|| DEFAULT_CONFIG_PATH.to_string())
        });
        if let Some(path) = path {
            if Path::new(&path).is_dir() {
                return Err(ConfigError::IsDirectory(path));
            }
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            config.apply_file(&text, &path, &mut warnings)?;
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("FLEET_") && k.len() > "FLEET_".len())
            .collect();
        env.sort();
        for (key, value) in env {
            let name = key["FLEET_".len()..].to_ascii_lowercase();
            config.set(
                &name,
                &value,
                &format!("environment variable {key}"),
                &mut warnings,
            )?;
        }
        for (name, value) in &cl.options {
            config.set(name, value, &format!("flag --{name}"), &mut warnings)?;
        }
        Ok((config, warnings))
    }

    /// fleet.conf's text alone over the defaults (what `load` does with the file; the
    /// fuzz target drives it).
    pub fn from_file_text(text: &str, path: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::default();
        let mut warnings = Vec::new();
        config.apply_file(text, path, &mut warnings)?;
        Ok((config, warnings))
    }

    fn apply_file(
        &mut self,
        text: &str,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        for (name, value) in parse_file(text, path)? {
            self.set(&name, &value, path, warnings)?;
        }
        Ok(())
    }

    /// Applies one option from a named source.
    fn set(
        &mut self,
        name: &str,
        value: &str,
        source: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let name = name.to_ascii_lowercase().replace('-', "_");
        let invalid = |why: &str| ConfigError::Invalid {
            source_name: source.to_string(),
            name: name.clone(),
            value: value.to_string(),
            why: why.to_string(),
        };
        let Some(spec) = option(&name) else {
            return Err(ConfigError::Unknown {
                source_name: source.to_string(),
                name,
            });
        };
        match spec.apply {
            Apply::Set(apply) => apply(self, value).map_err(|w| invalid(&w))?,
            Apply::NotImplemented(check) => {
                check(value).map_err(|w| invalid(&w))?;
                warnings.push(format!(
                    "Config option {name} is not implemented by this fleetd - ignoring"
                ));
            }
            Apply::Deprecated => warnings.push(format!(
                "Config option {name} is no longer supported - ignoring"
            )),
        }
        Ok(())
    }
}

/// Parses fleet.conf: `option=value` lines at top level, `#`/`;` comments, keys
/// case-insensitive, values optionally quoted with `"` or `'`, unquoted values ending at
/// the first `#` or `;`, a trailing `\` joining lines.
fn parse_file(text: &str, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start_line = i + 1;
        }
        if let Some(cont) = raw.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                source_name: path.to_string(),
                line: start_line,
            });
        };
        let value = value.trim();
        let value = if let Some(q) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
            match value[1..].find(q) {
                Some(end) => value[1..1 + end].to_string(),
                None => {
                    return Err(ConfigError::Syntax {
                        source_name: path.to_string(),
                        line: start_line,
                    });
                }
            }
        } else {
            value
                .split(['#', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        };
        out.push((key.trim().to_ascii_lowercase(), value));
    }
    Ok(out)
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
    let s: f64 = v
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(s > 0.0 && s.is_finite() && s < 1e9) {
        return Err("expected a positive number of seconds".into());
    }
    // A positive number can still round to nothing (`1e-10`): a zero request timeout
    // would fail every etcd call, a zero interval would spin.
    let d = Duration::from_secs_f64(s);
    if d < Duration::from_millis(1) {
        return Err("must be at least 0.001 seconds".into());
    }
    Ok(d)
}

/// Go's `time.ParseDuration` format (`30s`, `1m30s`, `1.5h`, `500ms`), which
/// `agent_ttl` uses; a bare number is seconds. The parser is core's, shared with the lab.
pub fn go_duration(v: &str) -> Result<Duration, String> {
    fleet_core::parse_duration(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.conf");
        std::fs::write(&path, file).unwrap();
        let mut args = vec!["fleetd".to_string(), format!("--config={}", path.display())];
        args.extend(flags.iter().map(|s| s.to_string()));
        let cl = parse_command_line(&args).unwrap();
        Config::load(&cl, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map(|(c, _)| c)
    }

    #[test]
    fn defaults_are_fleets() {
        let c = load("", &[], &[]).unwrap();
        assert_eq!(
            c.etcd_servers,
            ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]
        );
        assert_eq!(c.etcd_key_prefix, "/_coreos.com/fleet/");
        assert_eq!(c.agent_ttl, Duration::from_secs(30));
        assert_eq!(c.engine_reconcile_interval, Duration::from_secs(2));
        assert_eq!(c.etcd_request_timeout, Duration::from_secs(3));
        assert_eq!(c.engine_lease_ttl, Duration::from_secs(5));
        assert!(!c.disable_engine);
    }

    #[test]
    fn file_syntax_and_precedence() {
        let file = "# comment\n; another\nETCD_SERVERS=[\"http://a:2379\", \"http://b:2379\"]\nmetadata=\"region=us-east, disk = ssd\"\nagent_ttl = 3s # short\npublic_ip='10.0.0.5'\ndisable_engine=true\n";
        let c = load(file, &[], &[]).unwrap();
        assert_eq!(c.etcd_servers, ["http://a:2379", "http://b:2379"]);
        assert_eq!(c.metadata.get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(c.agent_ttl, Duration::from_secs(3));
        assert_eq!(c.public_ip, Some("10.0.0.5".parse().unwrap()));
        assert!(c.disable_engine);
        assert_eq!(c.api_etcd_username, None);
        let c = load(
            "api_etcd_username=fleet-api-x\napi_etcd_password=s3cret\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.api_etcd_username.as_deref(), Some("fleet-api-x"));
        assert_eq!(
            c.api_etcd_password.as_ref().map(|p| p.expose()),
            Some("s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = load(
            "api_listen=0.0.0.0:49153, 127.0.0.1:49154\napi_socket=\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.api_listen.len(), 2);
        assert_eq!(c.api_socket, None);
        // env beats the file, flags beat env
        let c = load(
            file,
            &[("FLEET_AGENT_TTL", "10s"), ("FLEET_PUBLIC_IP", "10.0.0.6")],
            &["--public-ip=10.0.0.7"],
        )
        .unwrap();
        assert_eq!(c.agent_ttl, Duration::from_secs(10));
        assert_eq!(c.public_ip, Some("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(matches!(
            load("etcd_server=http://x:2379\n", &[], &[]),
            Err(ConfigError::Unknown { .. })
        ));
        assert!(matches!(
            load("agent_ttl=soon\n", &[], &[]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            load("", &[("FLEET_DISABLE_ENGINE", "maybe")], &[]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            load("public_ip=not-an-ip\n", &[], &[]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            load("just words\n", &[], &[]),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        let e = load("agent_ttl=soon\n", &[], &[]).unwrap_err().to_string();
        assert!(e.contains("agent_ttl") && e.contains("soon"), "{e}");
        let args: Vec<String> = ["fleetd", "extra"].iter().map(|s| s.to_string()).collect();
        assert!(
            parse_command_line(&args)
                .unwrap_err()
                .contains("takes no arguments")
        );
    }

    #[test]
    fn unimplemented_options_warn_and_huge_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.conf");
        std::fs::write(&path, "token_limit=50\nenable_grpc=true\n").unwrap();
        let args = ["fleetd".to_string(), format!("--config={}", path.display())];
        let cl = parse_command_line(&args).unwrap();
        let (_, warnings) = Config::load(&cl, Vec::new()).unwrap();
        assert_eq!(
            warnings,
            [
                "Config option token_limit is not implemented by this fleetd - ignoring",
                "Config option enable_grpc is not implemented by this fleetd - ignoring"
            ]
        );
        // still validated
        assert!(load("token_limit=lots\n", &[], &[]).is_err());
        let e = load("", &[], &["--agent_ttl=10000000000000000h"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = load("", &[], &["--metadata=region=eu\x1b[2J,disk=ssd"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metadata \"region\" holds control character U+001B"),
            "{e}"
        );
        assert!(!e.chars().any(char::is_control), "{e}");
        let e = load("", &[], &["--etcd_request_timeout=1e300"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("etcd_request_timeout"), "{e}");
        // Positive but rounding to nothing: a zero timeout would fail every etcd call.
        for tiny in ["0.0000000001", "1e-300", "0.0009"] {
            for opt in ["etcd_request_timeout", "engine_reconcile_interval"] {
                let e = load(&format!("{opt}={tiny}\n"), &[], &[])
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("at least 0.001 seconds"), "{e}");
            }
        }
        let c = load("engine_reconcile_interval=0.001\n", &[], &[]).unwrap();
        assert_eq!(c.engine_reconcile_interval, Duration::from_millis(1));
    }

    #[test]
    fn lease_and_timeout_are_bounded() {
        let c = load("engine_lease_ttl=10s\netcd_request_timeout=0.5\n", &[], &[]).unwrap();
        assert_eq!(c.engine_lease_ttl, Duration::from_secs(10));
        assert_eq!(c.etcd_request_timeout, Duration::from_millis(500));
        for bad in [
            "engine_lease_ttl=500ms",
            "engine_lease_ttl=2m",
            "engine_lease_ttl=soon",
            "etcd_request_timeout=0.1",
            "etcd_request_timeout=61",
        ] {
            let e = load(&format!("{bad}\n"), &[], &[]).unwrap_err().to_string();
            let name = bad.split('=').next().unwrap_or_default();
            assert!(e.contains(name), "{bad}: {e}");
        }
    }

    #[test]
    fn each_option_is_defined_once() {
        let mut names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "an option is defined twice");
        assert!(is_bool_option("disable-engine") && !is_bool_option("agent_ttl"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("5"), Ok(Duration::from_secs(5)));
        assert!(
            go_duration("").is_err() && go_duration("3x").is_err() && go_duration("s").is_err()
        );
    }
}
