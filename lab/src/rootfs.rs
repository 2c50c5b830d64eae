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

/// Debian mirror debootstrap downloads from (override: `FLEET_LAB_MIRROR`).
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

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
/// `mirror` is the Debian mirror (default [`DEFAULT_MIRROR`], or `FLEET_LAB_MIRROR`).
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
    let mirror = mirror.map(str::to_string).unwrap_or_else(|| {
        std::env::var("FLEET_LAB_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.to_string())
    });
    let log_path = tmp.with_extension("log");
    let log = std::fs::File::create(&log_path).map_err(LabError::io(format!(
        "cannot create {}",
        log_path.display()
    )))?;
    let err_log = log
        .try_clone()
        .map_err(LabError::io("cannot dup log file"))?;
    let include = spec.packages.iter().cloned().collect::<Vec<_>>().join(",");
    let status = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={include}"),
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
}
