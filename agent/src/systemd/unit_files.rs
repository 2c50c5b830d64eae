//! The units directory (`/run/fleet/units` by default): where the agent writes the
//! canonical body of every unit it loads, and what a restarted agent reads back to adopt
//! units instead of restarting them.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fleet_core::{UnitFile, UnitHash, UnitName};

use super::SystemdError;

/// Unit types fleet writes (fleetctl's suffixes); other files in the directory are not
/// fleet's and are ignored.
const RECOGNISED_TYPES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "path",
    "device",
    "mount",
    "automount",
];

/// The directory holding fleet's unit files, one file per unit named after it.
#[derive(Clone, Debug)]
pub(crate) struct UnitsDirectory {
    path: PathBuf,
}

fn io_error(path: &Path, source: io::Error) -> SystemdError {
    SystemdError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl UnitsDirectory {
    /// Creates the directory (mode 0755, as fleet) if missing.
    pub(crate) fn create(path: PathBuf) -> Result<Self, SystemdError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&path)
            .map_err(|e| io_error(&path, e))?;
        Ok(UnitsDirectory { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where a unit's file lives.
    pub(crate) fn file(&self, unit: &UnitName) -> PathBuf {
        self.path.join(unit.as_str())
    }

    /// Writes a unit's text (mode 0644) via a temporary file and a rename, so systemd and a
    /// restarted agent never read half a file.
    pub(crate) fn write(&self, unit: &UnitName, text: &str) -> Result<PathBuf, SystemdError> {
        let target = self.file(unit);
        // A short temp name: the longest unit name systemd takes is already the longest
        // file name the filesystem does, so `.NAME.tmp` would not fit.
        let tmp = self.path.join(format!(".fleet-{:016x}.tmp", {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            unit.as_str().hash(&mut h);
            h.finish()
        }));
        fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
            .map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))?;
        Ok(target)
    }

    /// Deletes a unit's file; a file already gone is not an error (removal is retried).
    pub(crate) fn remove(&self, unit: &UnitName) -> Result<(), SystemdError> {
        let target = self.file(unit);
        match fs::remove_file(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&target, e)),
        }
    }

    /// Names of the unit files present (recognised types only), sorted.
    pub(crate) fn names(&self) -> Result<Vec<UnitName>, SystemdError> {
        let entries = fs::read_dir(&self.path).map_err(|e| io_error(&self.path, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.path, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(unit) = UnitName::parse(&name) else {
                continue;
            };
            if RECOGNISED_TYPES.contains(&unit.unit_type()) && entry.path().is_file() {
                names.push(unit);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every unit file with the hash of its canonical form. Files that no longer parse are
    /// skipped with a warning: the agent then treats the unit as not installed and rewrites it.
    pub(crate) fn scan(&self) -> Result<Vec<(UnitName, UnitHash)>, SystemdError> {
        let mut out = Vec::new();
        for unit in self.names()? {
            let path = self.file(&unit);
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path, e)),
            };
            match UnitFile::parse(&text) {
                Ok(file) => out.push((unit, file.hash())),
                Err(e) => {
                    tracing::warn!(unit = %unit.as_str(), error = %e, "ignoring unparsable unit file")
                }
            }
        }
        Ok(out)
    }
}

/// Whether a unit's text has an `[Install]` section, i.e. must be runtime-enabled (fleet
/// behaviour: such units are `systemctl enable --runtime --force`d after linking).
pub(crate) fn has_install_section(text: &str) -> bool {
    UnitFile::parse(text).is_ok_and(|f| f.has_section("Install"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    #[test]
    fn write_scan_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = UnitsDirectory::create(tmp.path().join("units")).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let text = "[Service]\nExecStart=/bin/true\n";
        let path = dir.write(&name("a.service"), text).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::write(dir.path().join("README"), "not a unit").unwrap();
        fs::write(dir.path().join("x.target"), "[Unit]\n").unwrap();
        let scanned = dir.scan().unwrap();
        assert_eq!(
            scanned,
            vec![(name("a.service"), UnitFile::parse(text).unwrap().hash())]
        );
        dir.remove(&name("a.service")).unwrap();
        dir.remove(&name("a.service")).unwrap();
        assert!(dir.scan().unwrap().is_empty());
    }

    /// The longest name systemd accepts fits on disk, temp file included.
    #[test]
    fn the_longest_unit_name_can_be_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = UnitsDirectory::create(tmp.path().join("units")).unwrap();
        let long = format!(
            "{}.service",
            "a".repeat(fleet_core::unit::name::MAX_NAME_LEN - ".service".len())
        );
        let path = dir
            .write(&name(&long), "[Service]\nExecStart=/bin/true\n")
            .unwrap();
        assert_eq!(path.file_name().unwrap().len(), 255);
        assert_eq!(dir.scan().unwrap().len(), 1, "no temp file left behind");
    }

    #[test]
    fn install_section_detection() {
        assert!(has_install_section(
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\n"
        ));
        assert!(!has_install_section("[Service]\nExecStart=/bin/true\n"));
    }
}
