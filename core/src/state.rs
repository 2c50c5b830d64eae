//! Desired and observed unit states.

use std::fmt;

/// The desired state of a unit in the cluster ("DSTATE"), set by fleetctl.
/// Ordered: `Inactive < Loaded < Launched`, the path the agent walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetState {
    /// Known to fleet, not assigned to a machine.
    Inactive,
    /// Assigned to a machine and loaded into its systemd, not started.
    Loaded,
    /// Loaded and started.
    Launched,
}

/// An unknown target-state word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target state {0:?}: expected inactive, loaded or launched")]
pub struct InvalidTargetState(pub String);

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Inactive => "inactive",
            TargetState::Loaded => "loaded",
            TargetState::Launched => "launched",
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TargetState {
    type Err = InvalidTargetState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inactive" => Ok(TargetState::Inactive),
            "loaded" => Ok(TargetState::Loaded),
            "launched" => Ok(TargetState::Launched),
            other => Err(InvalidTargetState(other.to_string())),
        }
    }
}

/// systemd's view of a unit on one machine, verbatim (`loaded`/`active`/`running`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SystemdState {
    pub load: String,
    pub active: String,
    pub sub: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        for s in [
            TargetState::Inactive,
            TargetState::Loaded,
            TargetState::Launched,
        ] {
            assert_eq!(s.as_str().parse::<TargetState>(), Ok(s));
        }
        assert!(
            TargetState::Inactive < TargetState::Loaded
                && TargetState::Loaded < TargetState::Launched
        );
        assert!("running".parse::<TargetState>().is_err());
    }
}
