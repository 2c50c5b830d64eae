//! The unit-file model: names, file parsing and canonical form, `[X-Fleet]` requirements.

pub mod file;
pub mod glob;
pub mod name;
pub mod requirements;

pub use file::{ParseError, UnitFile, UnitHash, UnitOption};
pub use glob::UnitGlob;
pub use name::{NameError, UnitName};
pub use requirements::{InvalidRequirements, Requirements};
