//! `fleetctl fd-forward SOCKET` (internal): joins stdin/stdout to a unix socket, so
//! `--tunnel` can reach a remote fleetd's socket through `ssh HOST fleetctl fd-forward`.

use std::process::ExitCode;

use crate::context::fail;

pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let [path] = args else {
        return Err(fail("Provide a single argument"));
    };
    let socket = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| fail(format!("Unable to connect to {path}: {e}")))?;
    let (mut from_socket, mut to_socket) = socket.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    // Either side ending ends the forward (fleet's behaviour).
    tokio::select! {
        r = tokio::io::copy(&mut stdin, &mut to_socket) => { r?; }
        r = tokio::io::copy(&mut from_socket, &mut stdout) => { r?; }
    }
    Ok(ExitCode::SUCCESS)
}
