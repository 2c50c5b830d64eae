//! Unit names, validated exactly as fleet (and systemd) do, with template/instance parts.

use std::fmt;

/// Unit types fleet accepts in a name.
const UNIT_TYPES: &[&str] = &[
    "automount",
    "busname",
    "device",
    "mount",
    "path",
    "scope",
    "service",
    "slice",
    "snapshot",
    "socket",
    "swap",
    "target",
    "timer",
];
/// Unit types that may carry an `@` (templates and instances).
const TEMPLATE_TYPES: &[&str] = &["path", "service", "socket", "target", "timer"];
/// Suffixes fleetctl recognises on its arguments; anything else gets `.service` appended.
const FLEETCTL_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".device",
    ".mount",
    ".automount",
];
/// Longest unit name systemd accepts (its `UNIT_NAME_MAX` is 256 with the NUL): a
/// longer one fleet would store and no machine could load. Also the file-name limit.
pub const MAX_NAME_LEN: usize = 255;

/// A valid unit name such as `web@01.service`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitName(String);

/// Why a name is not a valid unit name; messages are fleet's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("unit name cannot be empty")]
    Empty,
    #[error("unit name exceeds maximum length ({MAX_NAME_LEN})")]
    TooLong,
    #[error("unit name must contain \".\"")]
    NoDot,
    #[error("unit name cannot end in \".\"")]
    EndsInDot,
    #[error("invalid unit type: {0:?}")]
    InvalidType(String),
    #[error("invalid unit type for template: {0:?}")]
    InvalidTemplateType(String),
    /// A control character is shown escaped (`\u{1b}`), never raw on the terminal.
    #[error("invalid character '{}' in unit name", shown(*.0))]
    InvalidChar(char),
    #[error("unit name cannot start in \"@\"")]
    StartsWithAt,
    /// `.service`: systemd refuses a name with nothing before the type.
    #[error("unit name cannot start in \".\"")]
    StartsWithDot,
}

/// `c` as an error message shows it: control characters escaped, others as they are.
fn shown(c: char) -> String {
    if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    }
}

impl UnitName {
    /// Validates a unit name, checking in fleet's order so the first error matches.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let Some(dot) = name.rfind('.') else {
            return Err(NameError::NoDot);
        };
        if dot == name.len() - 1 {
            return Err(NameError::EndsInDot);
        }
        if dot == 0 {
            return Err(NameError::StartsWithDot);
        }
        let (stem, suffix) = (&name[..dot], &name[dot + 1..]);
        if !UNIT_TYPES.contains(&suffix) {
            return Err(NameError::InvalidType(suffix.to_string()));
        }
        if name.contains('@') && !TEMPLATE_TYPES.contains(&suffix) {
            return Err(NameError::InvalidTemplateType(suffix.to_string()));
        }
        if let Some(c) = stem
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ":_.@\\-".contains(*c)))
        {
            return Err(NameError::InvalidChar(c));
        }
        if name.starts_with('@') {
            return Err(NameError::StartsWithAt);
        }
        Ok(UnitName(name.to_string()))
    }

    /// Turns a fleetctl argument into (unit name, local file path), as fleetctl does:
    /// `.service` is appended unless the argument ends in a suffix fleetctl knows, and the
    /// name is the basename. The path is where submit/load/start look for the file.
    pub fn from_arg(arg: &str) -> Result<(UnitName, String), NameError> {
        let path = if FLEETCTL_SUFFIXES.iter().any(|s| arg.ends_with(s)) {
            arg.to_string()
        } else {
            format!("{arg}.service")
        };
        let base = path.rsplit('/').next().unwrap_or(&path);
        Ok((UnitName::parse(base)?, path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unit type after the last dot, e.g. `service`.
    pub fn unit_type(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(_, t)| t)
    }

    /// The name without its type suffix (`%N`), e.g. `web@01`.
    pub fn stem(&self) -> &str {
        self.0.rsplit_once('.').map_or(self.0.as_str(), |(s, _)| s)
    }

    /// The part before the first `@` of the stem (`%p`), e.g. `web`.
    pub fn prefix(&self) -> &str {
        let stem = self.stem();
        stem.split_once('@').map_or(stem, |(p, _)| p)
    }

    /// The instance string (`%i`): `01` for `web@01.service`, empty for templates and
    /// plain units.
    pub fn instance(&self) -> &str {
        self.stem().split_once('@').map_or("", |(_, i)| i)
    }

    /// A template is `prefix@.type`: it has an `@` and an empty instance.
    pub fn is_template(&self) -> bool {
        self.0.contains('@') && self.instance().is_empty()
    }

    /// An instance is `prefix@instance.type` with a non-empty instance.
    pub fn is_instance(&self) -> bool {
        !self.instance().is_empty()
    }

    /// For an instance, the template it is created from (`web@.service`).
    pub fn template(&self) -> Option<UnitName> {
        self.is_instance()
            .then(|| UnitName(format!("{}@.{}", self.prefix(), self.unit_type())))
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UnitName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitName::parse(s)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let long = format!("{}.service", "a".repeat(250));
        // systemd's limit: 255 characters load, 256 do not (fleet allowed 256).
        let longest = format!("{}.service", "a".repeat(255 - ".service".len()));
        let one_more = format!("a{longest}");
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("hello.service", Ok(())),
            ("web@01.service", Ok(())),
            ("web@.service", Ok(())),
            ("a-b_c:d\\e.socket", Ok(())),
            ("foo.1.service", Ok(())),
            // fleet let an empty prefix pass; systemd refuses it, so do we
            (".service", Err(NameError::StartsWithDot)),
            ("", Err(NameError::Empty)),
            (&long, Err(NameError::TooLong)),
            (&longest, Ok(())),
            (&one_more, Err(NameError::TooLong)),
            ("hello", Err(NameError::NoDot)),
            ("hello.", Err(NameError::EndsInDot)),
            ("hello.exe", Err(NameError::InvalidType("exe".into()))),
            (
                "web@01.mount",
                Err(NameError::InvalidTemplateType("mount".into())),
            ),
            ("he%llo.service", Err(NameError::InvalidChar('%'))),
            ("he llo.service", Err(NameError::InvalidChar(' '))),
            ("@foo.service", Err(NameError::StartsWithAt)),
        ];
        for (name, want) in cases {
            assert_eq!(UnitName::parse(name).map(|_| ()), *want, "{name}");
        }
    }

    #[test]
    fn error_messages_are_fleets() {
        assert_eq!(
            UnitName::parse("he%llo.service").unwrap_err().to_string(),
            "invalid character '%' in unit name"
        );
        for (name, shown) in [
            ("x\x1b[2J.service", "\\u{1b}"),
            ("x\u{9b}.service", "\\u{9b}"),
            ("a\nb.service", "\\n"),
        ] {
            assert_eq!(
                UnitName::parse(name).unwrap_err().to_string(),
                format!("invalid character '{shown}' in unit name")
            );
        }
        assert_eq!(
            UnitName::parse("x.exe").unwrap_err().to_string(),
            "invalid unit type: \"exe\""
        );
        assert_eq!(
            UnitName::parse("x").unwrap_err().to_string(),
            "unit name must contain \".\""
        );
    }

    #[test]
    fn parts() {
        let n = UnitName::parse("web@01.service").unwrap();
        assert_eq!(
            (n.prefix(), n.instance(), n.stem(), n.unit_type()),
            ("web", "01", "web@01", "service")
        );
        assert!(n.is_instance() && !n.is_template());
        assert_eq!(n.template().unwrap().as_str(), "web@.service");
        let t = UnitName::parse("web@.service").unwrap();
        assert!(t.is_template() && !t.is_instance() && t.template().is_none());
        let p = UnitName::parse("hello.service").unwrap();
        assert_eq!((p.prefix(), p.instance()), ("hello", ""));
        assert!(!p.is_template() && !p.is_instance());
    }

    #[test]
    fn fleetctl_arguments() {
        let cases = [
            ("foo", "foo.service", "foo.service"),
            ("foo.1", "foo.1.service", "foo.1.service"),
            ("foo.target", "foo.target.service", "foo.target.service"),
            ("a/b/x.socket", "x.socket", "a/b/x.socket"),
            (
                "units/web@01.service",
                "web@01.service",
                "units/web@01.service",
            ),
        ];
        for (arg, name, path) in cases {
            let (n, p) = UnitName::from_arg(arg).unwrap();
            assert_eq!((n.as_str(), p.as_str()), (name, path), "{arg}");
        }
    }
}
