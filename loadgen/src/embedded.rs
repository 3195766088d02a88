//! The embedded default server: when a scenario names no target, loadgen runs
//! `chat-server` as a *child process* (itself, re-executed with the hidden `serve`
//! subcommand). A child rather than a task in this process because the open-file limit is
//! per process — a server inside loadgen would halve the users a run can hold — and so
//! that the server's CPU is accounted separately from the load generator's.
//!
//! The child prints `listening ADDR` on stdout once bound, and shuts down gracefully when
//! its stdin closes — also if loadgen dies — so it never outlives the run.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The line prefix the child prints when ready.
pub const READY: &str = "listening ";

/// Why the embedded server did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot find the loadgen executable to start the embedded server: {0}")]
    Exe(std::io::Error),
    #[error("cannot start the embedded server: {0}")]
    Spawn(std::io::Error),
    #[error("the embedded server did not report its address within 10 s")]
    NoAddress,
    #[error("the embedded server printed {0:?} instead of its address")]
    BadAddress(String),
}

/// A running child server.
pub struct EmbeddedServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The command line, for the report.
    pub command: String,
}

impl EmbeddedServer {
    /// Starts the child on 127.0.0.1, port chosen by the kernel.
    pub async fn start() -> Result<EmbeddedServer, EmbeddedError> {
        let exe = std::env::current_exe().map_err(EmbeddedError::Exe)?;
        let args = ["serve", "--listen", "127.0.0.1:0"];
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(EmbeddedError::Spawn)?;
        let stdout = child.stdout.take().ok_or(EmbeddedError::NoAddress)?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| EmbeddedError::NoAddress)?
            .map_err(|_| EmbeddedError::NoAddress)?
            .ok_or(EmbeddedError::NoAddress)?;
        let addr = line
            .strip_prefix(READY)
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| EmbeddedError::BadAddress(line.clone()))?;
        Ok(EmbeddedServer {
            stdin: child.stdin.take(),
            child,
            addr,
            command: format!("{} {}", exe.display(), args.join(" ")),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// `Some(description)` if the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(error.to_string()),
        }
    }

    /// Closes the child's stdin (its shutdown signal) and waits for it, killing it after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The body of `loadgen serve`: run the chat server until stdin closes or SIGTERM.
pub async fn serve(config: chat_server::Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};

    let server = chat_server::Server::start(config)
        .await
        .context("embedded server")?;
    println!("{READY}{}", server.local_addr());
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    // Ctrl-C reaches the whole process group: the parent handles it and then closes our
    // stdin, so the server stays up until the parent has read its metrics.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            read = stdin.read(&mut sink) => if !matches!(read, Ok(n) if n > 0) { break },
            _ = term.recv() => break,
            _ = interrupt.recv() => continue,
        }
    }
    server.shutdown().await;
    Ok(())
}
