//! Running `journalctl` / `systemctl status` on this machine and streaming their output
//! to a caller; the child is killed and reaped as soon as the caller goes away.

use std::path::PathBuf;
use std::process::Stdio;

use fleet_core::UnitName;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::pb::{OutputChunk, output_chunk::Chunk};

/// Output chunks as the server streams them.
pub type OutputStream = ReceiverStream<Result<OutputChunk, Status>>;

/// The local programs that answer journal and status requests. Configurable so tests
/// (and hosts with unusual layouts) can substitute them.
#[derive(Clone, Debug)]
pub struct LocalCommands {
    pub journalctl: PathBuf,
    pub systemctl: PathBuf,
    /// Ask the user manager (`--user`) instead of the system one (fleetd's `systemd_user`).
    pub user: bool,
}

impl Default for LocalCommands {
    fn default() -> Self {
        LocalCommands {
            journalctl: PathBuf::from("journalctl"),
            systemctl: PathBuf::from("systemctl"),
            user: false,
        }
    }
}

/// fleetctl's default `--lines`.
const DEFAULT_LINES: u32 = 10;

impl LocalCommands {
    /// `journalctl --no-pager --output=MODE -n N [-f] --unit=UNIT`. The values are
    /// joined to their options with `=`, so a unit name or mode starting with `-` is a
    /// value, never an option (journalctl's operands are matches, so `--` cannot help).
    pub(crate) fn journal(
        &self,
        unit: &UnitName,
        lines: Option<u32>,
        follow: bool,
        output: &str,
    ) -> Command {
        let mut cmd = Command::new(&self.journalctl);
        let lines = lines.unwrap_or(DEFAULT_LINES);
        cmd.args([
            "--no-pager".to_string(),
            format!("--output={output}"),
            "-n".to_string(),
            lines.to_string(),
        ]);
        if follow {
            cmd.arg("-f");
        }
        let unit_opt = if self.user { "--user-unit" } else { "--unit" };
        cmd.arg(format!("{unit_opt}={unit}"));
        cmd
    }

    /// `systemctl [--user] status -l --no-pager -- UNIT`: `--` keeps a unit name that
    /// starts with `-` from being read as an option.
    pub(crate) fn status(&self, unit: &UnitName) -> Command {
        let mut cmd = Command::new(&self.systemctl);
        if self.user {
            cmd.arg("--user");
        }
        cmd.args(["status", "-l", "--no-pager", "--", unit.as_str()]);
        cmd
    }
}

/// Starts `cmd` and streams its stdout/stderr, then its exit code as the last chunk.
pub(crate) fn stream_command(mut cmd: Command) -> Result<OutputStream, Status> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| Status::internal(format!("cannot run {program}: {e}")))?;
    let (tx, rx) = mpsc::channel(32);
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Status::internal(format!("{program}: no output pipes")));
    };
    tokio::spawn(async move {
        let mut out_buf = vec![0u8; 8192];
        let mut err_buf = vec![0u8; 8192];
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let chunk = tokio::select! {
                n = stdout.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => { out_open = false; None }
                    Ok(n) => Some(Chunk::Stdout(out_buf[..n].to_vec())),
                },
                n = stderr.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => { err_open = false; None }
                    Ok(n) => Some(Chunk::Stderr(err_buf[..n].to_vec())),
                },
                // The caller hung up (Ctrl-C on `journal -f`): stop the command.
                _ = tx.closed() => break,
            };
            if let Some(chunk) = chunk
                && tx
                    .send(Ok(OutputChunk { chunk: Some(chunk) }))
                    .await
                    .is_err()
            {
                break;
            }
        }
        if out_open || err_open {
            let _ = child.start_kill();
        }
        let code = match child.wait().await {
            Ok(status) => status.code().unwrap_or(-1),
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!("{program}: {e}"))))
                    .await;
                return;
            }
        };
        let _ = tx
            .send(Ok(OutputChunk {
                chunk: Some(Chunk::ExitCode(code)),
            }))
            .await;
    });
    Ok(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(cmd: &Command) -> Vec<String> {
        cmd.as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn unit_names_never_become_options() {
        let commands = LocalCommands::default();
        let unit = UnitName::parse("-pFoo.service").unwrap();
        assert_eq!(
            argv(&commands.status(&unit)),
            ["status", "-l", "--no-pager", "--", "-pFoo.service"]
        );
        assert_eq!(
            argv(&commands.journal(&unit, Some(5), true, "-x")),
            [
                "--no-pager",
                "--output=-x",
                "-n",
                "5",
                "-f",
                "--unit=-pFoo.service"
            ]
        );
    }
}
