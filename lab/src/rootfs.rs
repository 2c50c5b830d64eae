//! The machine image: a debootstrapped Debian tree, built once and cached.
//!
//! Cached under /var/cache/fleet-lab/rootfs-<hash of suite and package list>. It is
//! built in a temp dir and renamed into place, so a failed build leaves no half cache,
//! and under a lock, so parallel labs build it once.

use sha1::{Digest, Sha1};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{LabError, Result};
use crate::sys::{FileLock, log_tail};

/// Default cache directory of images.
pub const CACHE_DIR: &str = "/var/cache/fleet-lab";

/// Packages every image has: systemd as init, D-Bus for systemctl, ip and ps for people.
pub const BASE_PACKAGES: &[&str] = &["dbus", "iproute2", "procps", "systemd", "systemd-sysv"];

/// Overrides the mirror taken from the host's apt sources.
pub const MIRROR_ENV: &str = "FLEET_LAB_MIRROR";

/// Where the host's apt keeps its sources, one-line (`.list`) and deb822 (`.sources`).
const APT_SOURCES: &str = "/etc/apt/sources.list";
const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// What an image contains; its hash names the cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub suite: String,
    pub packages: BTreeSet<String>,
}

impl ImageSpec {
    /// The base packages plus `extra`.
    pub fn new(suite: &str, extra: impl IntoIterator<Item = String>) -> Self {
        let mut packages: BTreeSet<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        packages.extend(extra);
        ImageSpec {
            suite: suite.to_string(),
            packages,
        }
    }

    /// Cache key: changes whenever the suite or the package list does.
    pub fn key(&self) -> String {
        let list = self.packages.iter().cloned().collect::<Vec<_>>().join(",");
        let digest = Sha1::digest(format!("{}:{list}", self.suite).as_bytes());
        hex::encode(digest)[..16].to_string()
    }

    /// Where this image lives in `cache`.
    pub fn path_in(&self, cache: &Path) -> PathBuf {
        cache.join(format!("rootfs-{}", self.key()))
    }
}

/// Returns the cached image, building it first if needed (minutes: it downloads).
/// `on_build` is called before a build starts, so callers can say why they wait.
/// `mirror` is the Debian mirror (default: [`mirror`]).
pub fn ensure(
    cache: &Path,
    spec: &ImageSpec,
    mirror: Option<&str>,
    on_build: &mut dyn FnMut(&Path),
) -> Result<PathBuf> {
    let target = spec.path_in(cache);
    if target.join("sbin/init").exists() {
        return Ok(target);
    }
    let _lock = FileLock::acquire(&cache.join(".lock"))?;
    if target.join("sbin/init").exists() {
        return Ok(target); // someone else built it while we waited
    }
    on_build(&target);
    remove_stale_builds(cache)?;
    let tmp = cache.join(format!(".tmp-{}-{}", spec.key(), std::process::id()));
    let result = build(spec, &tmp, mirror).and_then(|()| {
        std::fs::rename(&tmp, &target).map_err(LabError::io(format!(
            "cannot move image to {}",
            target.display()
        )))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

/// Removes temp trees of builds that died (safe: we hold the build lock).
fn remove_stale_builds(cache: &Path) -> Result<()> {
    let entries = std::fs::read_dir(cache)
        .map_err(LabError::io(format!("cannot read {}", cache.display())))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn build(spec: &ImageSpec, tmp: &Path, mirror: Option<&str>) -> Result<()> {
    let mirror = match mirror {
        Some(m) => m.to_string(),
        None => self::mirror(&spec.suite)?,
    };
    let log_path = tmp.with_extension("log");
    let log = std::fs::File::create(&log_path).map_err(LabError::io(format!(
        "cannot create {}",
        log_path.display()
    )))?;
    let err_log = log
        .try_clone()
        .map_err(LabError::io("cannot dup log file"))?;
    let include = spec.packages.iter().cloned().collect::<Vec<_>>().join(",");
    let mut debootstrap = Command::new("debootstrap");
    // debootstrap fetches with wget, which knows apt's proxy only from the environment.
    if std::env::var_os("http_proxy").is_none()
        && let Some(proxy) = apt_proxy()
    {
        debootstrap.env("http_proxy", proxy);
    }
    let status = debootstrap
        .args([
            "--variant=minbase",
            &format!("--include={include}"),
            // debootstrap takes no `--`: the suite is a validated word, the target ours.
            &spec.suite,
        ])
        .arg(tmp)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .status()
        .map_err(LabError::io(
            "cannot run debootstrap (apt-get install debootstrap)",
        ));
    let tail = log_tail(&log_path, 5);
    let _ = std::fs::remove_file(&log_path);
    if !status?.success() {
        return Err(LabError::Rootfs(format!(
            "debootstrap {} from {mirror} failed:\n{tail}",
            spec.suite
        )));
    }
    prepare(tmp)
}

/// The Debian mirror images of `suite` are built from: `FLEET_LAB_MIRROR`, else the one
/// the host's own apt uses for that suite, so a machine behind its own mirror or proxy
/// works unchanged. No mirror is written into the code.
pub fn mirror(suite: &str) -> Result<String> {
    if let Ok(m) = std::env::var(MIRROR_ENV)
        && !m.trim().is_empty()
    {
        return Ok(m.trim().to_string());
    }
    let mut files = Vec::new();
    if let Ok(text) = std::fs::read_to_string(APT_SOURCES) {
        files.push((APT_SOURCES.to_string(), text));
    }
    if let Ok(dir) = std::fs::read_dir(APT_SOURCES_DIR) {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if let Ok(text) = std::fs::read_to_string(&path) {
                files.push((path.display().to_string(), text));
            }
        }
    }
    mirror_in_sources(&files, suite).ok_or_else(|| {
        LabError::Rootfs(format!(
            "no Debian mirror for {suite} (type deb, component main) in the host's apt \
             sources ({APT_SOURCES}, {APT_SOURCES_DIR}/); set {MIRROR_ENV}=URL"
        ))
    })
}

/// The first `deb` source of `suite` with the `main` component in apt's source files
/// (`(file name, text)`, in apt's reading order); deb822 in `*.sources`, one-line elsewhere.
fn mirror_in_sources(files: &[(String, String)], suite: &str) -> Option<String> {
    let usable = |types: &[&str], uri: &str, suites: &[&str], components: &[&str]| {
        types.contains(&"deb")
            && suites.contains(&suite)
            && components.contains(&"main")
            && (uri.starts_with("http://") || uri.starts_with("https://"))
    };
    for (name, text) in files {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| -> Vec<&str> {
                    stanza
                        .lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim().eq_ignore_ascii_case(key).then_some(v)
                        })
                        .map(|v| v.split_whitespace().collect())
                        .unwrap_or_default()
                };
                if field("Enabled")
                    .first()
                    .is_some_and(|e| e.eq_ignore_ascii_case("no"))
                {
                    continue;
                }
                let (types, suites, components) =
                    (field("Types"), field("Suites"), field("Components"));
                if let Some(uri) = field("URIs")
                    .into_iter()
                    .find(|u| usable(&types, u, &suites, &components))
                {
                    return Some(uri.trim_end_matches('/').to_string());
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                // `deb [opt=v ...] URI SUITE COMPONENT...`
                let rest = match line.trim().strip_prefix("deb ") {
                    Some(rest) => rest.trim_start(),
                    None => continue,
                };
                let rest = match rest.strip_prefix('[') {
                    Some(opts) => opts.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [uri, s, components @ ..] = words.as_slice()
                    && usable(&["deb"], uri, &[s], components)
                {
                    return Some(uri.trim_end_matches('/').to_string());
                }
            }
        }
    }
    None
}

/// apt's configured HTTP proxy (`Acquire::http::Proxy`), if any.
fn apt_proxy() -> Option<String> {
    let out = Command::new("apt-config")
        .args(["shell", "PROXY", "Acquire::http::Proxy"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text.trim().strip_prefix("PROXY=")?.trim_matches('\'');
    (!value.is_empty() && value != "DIRECT").then(|| value.to_string())
}

/// Makes the tree bootable as many machines: an empty machine-id (so nspawn's `--uuid`
/// gives each machine its own) with D-Bus's copy linked to it.
fn prepare(root: &Path) -> Result<()> {
    let io = |what: &str| LabError::io(format!("preparing image: {what}"));
    std::fs::write(root.join("etc/machine-id"), "").map_err(io("etc/machine-id"))?;
    let dbus = root.join("var/lib/dbus");
    std::fs::create_dir_all(&dbus).map_err(io("var/lib/dbus"))?;
    let link = dbus.join("machine-id");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc/machine-id", &link).map_err(io("var/lib/dbus/machine-id"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_packages_and_suite_only() {
        let a = ImageSpec::new("bookworm", []);
        let b = ImageSpec::new("bookworm", ["curl".to_string()]);
        let c = ImageSpec::new("trixie", []);
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        // base packages listed again change nothing
        assert_eq!(
            a.key(),
            ImageSpec::new("bookworm", ["dbus".to_string()]).key()
        );
        assert_eq!(a.key(), "9bd26304ff0c614b");
    }

    fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mirror_comes_from_deb822_sources() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n\
                    Suites: bookworm bookworm-updates\nComponents: main contrib\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n";
        let files = sources(&[("/etc/apt/sources.list.d/debian.sources", text)]);
        assert_eq!(
            mirror_in_sources(&files, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in_sources(&files, "trixie"), None);
    }

    #[test]
    fn mirror_comes_from_one_line_sources() {
        let list = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] cdrom:/media bookworm main\n\
                    deb http://only-contrib.example/debian bookworm contrib\n\
                    deb [arch=amd64] https://proxy.example:3142/debian bookworm main # ours\n";
        let files = sources(&[("/etc/apt/sources.list", list)]);
        assert_eq!(
            mirror_in_sources(&files, "bookworm").as_deref(),
            Some("https://proxy.example:3142/debian")
        );
    }

    #[test]
    fn disabled_stanzas_and_other_files_are_skipped() {
        let files = sources(&[
            (
                "/etc/apt/sources.list.d/off.sources",
                "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n\
                 Suites: bookworm\nComponents: main\n",
            ),
            (
                "/etc/apt/sources.list.d/x.list.disabled",
                "deb http://disabled.example/debian bookworm main\n",
            ),
            (
                "/etc/apt/sources.list.d/on.list",
                "deb http://on.example/debian bookworm main\n",
            ),
        ]);
        assert_eq!(
            mirror_in_sources(&files, "bookworm").as_deref(),
            Some("http://on.example/debian")
        );
        assert_eq!(mirror_in_sources(&[], "bookworm"), None);
    }
}
