//! systemd over D-Bus behind the `UnitManager` trait. (In progress.)
