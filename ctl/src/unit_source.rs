//! Where a unit's text comes from when fleetctl creates it (fleet behaviour §2.5): the
//! local file named by the argument, else (for an instance) the template in the
//! registry, else the template file next to the argument's path.

use std::path::{Path, PathBuf};

use fleet_core::unit::file::MAX_UNIT_SIZE;
use fleet_core::{UnitFile, UnitName};

/// A local unit file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalFileError {
    #[error("unable to read unit file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("unit file {path} is too large ({size} bytes, the limit is {max})")]
    TooLarge { path: String, size: u64, max: usize },
    #[error("unable to parse unit file {path}: {source}")]
    Parse {
        path: String,
        source: fleet_core::unit::ParseError,
    },
}

/// Reads and parses a local unit file; `Ok(None)` when there is no file at `path`.
pub fn read_local(path: &str) -> Result<Option<UnitFile>, LocalFileError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LocalFileError::Read {
                path: path.to_string(),
                source,
            });
        }
    };
    if meta.is_dir() {
        return Ok(None);
    }
    if meta.len() > MAX_UNIT_SIZE as u64 {
        return Err(LocalFileError::TooLarge {
            path: path.to_string(),
            size: meta.len(),
            max: MAX_UNIT_SIZE,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| LocalFileError::Read {
        path: path.to_string(),
        source,
    })?;
    UnitFile::parse(&text)
        .map(Some)
        .map_err(|source| LocalFileError::Parse {
            path: path.to_string(),
            source,
        })
}

/// The path of the template file that sits next to an instance's path
/// (`units/web@01.service` → `units/web@.service`).
pub fn local_template_path(instance_path: &str, template: &UnitName) -> String {
    match Path::new(instance_path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(dir) => PathBuf::from(dir)
            .join(template.as_str())
            .to_string_lossy()
            .into_owned(),
        None => template.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_path_is_next_to_the_instance() {
        let t = UnitName::parse("web@.service").unwrap();
        assert_eq!(
            local_template_path("units/web@01.service", &t),
            "units/web@.service"
        );
        assert_eq!(local_template_path("web@01.service", &t), "web@.service");
    }

    #[test]
    fn missing_file_is_none_and_directory_is_none() {
        assert!(read_local("/nonexistent/x.service").unwrap().is_none());
        assert!(read_local("/").unwrap().is_none());
    }
}
