//! Hand-written proxy for the part of `org.freedesktop.systemd1.Manager` fleet uses.
//!
//! Written by hand (not zbus_systemd) to keep `&str` arguments, compile time low and no
//! coupling to systemd's release numbering. Signatures follow systemd's D-Bus API.

use zbus::OwnedObjectPath;

/// One row of `ListUnits`/`ListUnitsByNames`: name, description, load, active, sub,
/// following, unit path, job id, job type, job path.
pub(crate) type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// One change reported by the unit-file methods: type, file, destination.
pub(crate) type FileChange = (String, String, String);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub(crate) trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;

    fn reload(&self) -> zbus::Result<()>;

    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    fn link_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<FileChange>>;

    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<FileChange>)>;

    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<FileChange>>;

    fn list_units_by_names(&self, names: &[&str]) -> zbus::Result<Vec<UnitRow>>;

    fn list_units(&self) -> zbus::Result<Vec<UnitRow>>;

    /// Creates and starts a transient unit (with auxiliary units started alongside):
    /// properties `a(sv)`, auxiliary units `a(sa(sv))`.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, zbus::Variant<'_>)],
        aux: &[(&str, Vec<(&str, zbus::Variant<'_>)>)],
    ) -> zbus::Result<OwnedObjectPath>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn reloading(&self, active: bool) -> zbus::Result<()>;
}
