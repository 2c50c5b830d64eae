//! The agent: registration, reconciler, state reports. (In progress.)
