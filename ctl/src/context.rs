//! What every command gets: the parsed global flags, a lazily connected client and the
//! output streams. No globals: tests and commands see exactly this.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

use crate::cli::GlobalFlags;
use crate::client::Client;

/// A failure worded exactly as fleetctl words it, with its exit code. Printed once by
/// `main`, as-is (fleet's scripts grep these lines).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

/// Shorthand for a failure with exit status 1.
pub fn fail(message: impl Into<String>) -> anyhow::Error {
    Failure {
        message: message.into(),
        code: 1,
    }
    .into()
}

/// Per-invocation state passed to every command.
pub struct Ctx {
    pub global: GlobalFlags,
    client: Option<Client>,
    /// Whether stdout is a terminal (progress displays only then).
    pub tty: bool,
}

impl Ctx {
    pub fn new(global: GlobalFlags) -> Ctx {
        Ctx {
            global,
            client: None,
            tty: io::stderr().is_terminal(),
        }
    }

    /// Connects on first use, so commands that need no cluster (version) never touch it.
    pub async fn client(&mut self) -> anyhow::Result<&Client> {
        let client = match self.client.take() {
            Some(client) => client,
            None => Client::connect(&self.global)
                .await
                .map_err(|e| fail(format!("Unable to initialize client: {e:#}")))?,
        };
        Ok(self.client.insert(client))
    }
}

/// Writes one line to stdout; a closed pipe surfaces as an error `main` treats quietly.
pub fn out(line: impl Display) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// Writes one line to stderr (warnings and fleet's stderr messages).
pub fn err(line: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
