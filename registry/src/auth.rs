//! etcd authentication: the password as a value that never prints, and the one-line
//! reasons for etcd's authentication refusals (etcd's own words, such as "user name is
//! empty", do not tell an operator what to do).

use crate::RegistryError;

/// A password: its `Debug` prints `***`, it has no `Display`, so a derived `Debug` of a
/// configuration or a `--debug` dump never shows it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

/// Why etcd refused a request for who made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthRefusal {
    /// One line saying what is wrong.
    pub why: &'static str,
    /// The credentials are missing or wrong (rather than lacking a permission): the
    /// caller should point at where they are given.
    pub credentials: bool,
}

/// Why etcd refused the caller's identity or permission; `None` when `e` is not such a
/// refusal.
pub fn auth_refusal(e: &RegistryError) -> Option<AuthRefusal> {
    let source = match e {
        RegistryError::Etcd { source, .. } | RegistryError::Unreachable { source, .. } => source,
        _ => return None,
    };
    let message = match source {
        etcd_client::Error::GRpcStatus(s) => s.message(),
        _ => return None,
    };
    // etcd's messages (etcdserver/api/v3rpc/rpctypes), stable since etcd 3.2.
    let (why, credentials) = if message.contains("user name is empty") {
        (
            "etcd requires authentication: give a user name and password",
            true,
        )
    } else if message.contains("authentication failed, invalid user ID or password") {
        ("etcd refused the user name or password", true)
    } else if message.contains("invalid auth token") {
        (
            "etcd refused the authentication token (was the user's password changed?)",
            true,
        )
    } else if message.contains("authentication is not enabled") {
        (
            "a user name and password were given but etcd has authentication disabled",
            true,
        )
    } else if message.contains("permission denied") {
        (
            "etcd denied this user permission (check the user's etcd roles)",
            false,
        )
    } else {
        return None;
    };
    Some(AuthRefusal { why, credentials })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let mut cfg = crate::RegistryConfig::new("http://127.0.0.1:2379");
        cfg.username = Some("root".into());
        cfg.password = Some(Secret::from("hunter2-secret"));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2-secret") && shown.contains("***"),
            "{shown}"
        );
        assert_eq!(cfg.password.unwrap().expose(), "hunter2-secret");
    }
}
