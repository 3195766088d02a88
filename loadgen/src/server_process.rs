//! The one way loadgen starts a server under test as a local process: the embedded
//! default (loadgen itself, re-executed as `loadgen serve`) or a user's command line with
//! `{addr}` (the gate's base and candidate, `capacity --server`).
//!
//! A child process rather than a task in this process because the open-file limit is per
//! process — a server inside loadgen would halve the users a run can hold — and so that
//! the server's CPU and memory are accounted apart from the load generator's (`/proc/PID`).
//!
//! The embedded server binds a port the kernel picks and prints `listening ADDR` on stdout
//! once bound. A command is given a free loopback port in `{addr}` and is ready once it
//! accepts a TCP connection. Either way the child's stdin is held open until [`stop`]:
//! `loadgen serve` shuts down gracefully when it closes — also if loadgen dies — so it
//! never outlives the run; [`stop`] then sends SIGTERM, and SIGKILL after a grace period.
//!
//! [`stop`]: ServerProcess::stop

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::credentials::JwtSettings;

/// The line prefix `loadgen serve` prints when ready.
pub const READY: &str = "listening ";

/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Which server to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// chat-server inside a child `loadgen serve` on 127.0.0.1, a port the kernel picks;
    /// when the run's users mint tokens (`[users] jwt`), it verifies them with the same
    /// key (a private key's public half) and checks their `aud` and `iss`.
    Embedded(Option<JwtSettings>),
    /// A shell command line with `{addr}` where the listen address goes.
    Command(String),
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot find the loadgen executable to start the embedded server: {0}")]
    Exe(std::io::Error),
    #[error("cannot find a free port: {0}")]
    Port(std::io::Error),
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited before accepting connections ({status})")]
    Exited { command: String, status: String },
    #[error("`{command}` did not report its address within 15 s")]
    NoAddress { command: String },
    #[error("`{command}` printed {line:?} instead of its address")]
    BadAddress { command: String, line: String },
    #[error("`{command}` did not accept connections on {addr} within 15 s")]
    NotListening { command: String, addr: SocketAddr },
}

/// A running server process.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The command line that started it, for reports.
    pub command: String,
}

impl ServerProcess {
    /// Starts a server and waits until it is ready.
    pub async fn start(launch: &Launch) -> Result<ServerProcess, ServerError> {
        match launch {
            Launch::Embedded(jwt) => Self::embedded(jwt.as_ref()).await,
            Launch::Command(template) => Self::command(template).await,
        }
    }

    async fn embedded(jwt: Option<&JwtSettings>) -> Result<ServerProcess, ServerError> {
        let exe = std::env::current_exe().map_err(ServerError::Exe)?;
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .into();
        if let Some(jwt) = jwt {
            let key = [
                ("--jwt-secret-file", &jwt.secret_file),
                ("--jwt-private-key", &jwt.private_key),
            ];
            for (flag, path) in key {
                if let Some(path) = path {
                    args.extend([flag.to_string(), path.display().to_string()]);
                }
            }
            for (flag, claim) in [("--jwt-audience", "aud"), ("--jwt-issuer", "iss")] {
                if let Some(value) = jwt.claims.get(claim) {
                    args.extend([flag.to_string(), value.clone()]);
                }
            }
        }
        let command = format!("{} {}", exe.display(), args.join(" "));
        let mut child = spawn(Command::new(&exe).args(&args), Stdio::piped(), &command)?;
        let no_address = || ServerError::NoAddress {
            command: command.clone(),
        };
        let stdout = child.stdout.take().ok_or_else(no_address)?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| no_address())?
            .map_err(|_| no_address())?
            .ok_or_else(no_address)?;
        let addr = line
            .strip_prefix(READY)
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| ServerError::BadAddress {
                command: command.clone(),
                line: line.clone(),
            })?;
        Ok(ServerProcess {
            pid: child.id().unwrap_or(0),
            stdin: child.stdin.take(),
            child,
            addr,
            command,
        })
    }

    async fn command(template: &str) -> Result<ServerProcess, ServerError> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(ServerError::Port)?;
        let command = template.replace("{addr}", &addr.to_string());
        // `exec` so that the measured PID is the server itself, not a shell around it.
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(format!("exec {command}"));
        let mut child = spawn(&mut shell, Stdio::null(), &command)?;
        let pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ServerError::Exited {
                    command,
                    status: status.to_string(),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(ServerProcess {
                    stdin: child.stdin.take(),
                    child,
                    pid,
                    addr,
                    command,
                });
            }
            if Instant::now() > deadline {
                return Err(ServerError::NotListening { command, addr });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id (the server itself: a command's shell `exec`s it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::resources::cpu_seconds(self.pid)
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(error.to_string()),
        }
    }

    /// Closes its stdin, sends SIGTERM, waits up to `grace` for it to exit, then kills it.
    pub async fn stop(mut self, grace: Duration) {
        drop(self.stdin.take());
        if self.pid != 0 && self.exited().is_none() {
            // SAFETY: kill(2) with a PID we started and have not reaped yet.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Starts a server child: stdin held open (closing it asks `loadgen serve` to stop),
/// stderr shared with loadgen's, killed if the handle is dropped.
fn spawn(command: &mut Command, stdout: Stdio, shown: &str) -> Result<Child, ServerError> {
    command
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServerError::Spawn {
            command: shown.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_exits_is_reported() {
        let error = ServerProcess::start(&Launch::Command("true {addr}".into()))
            .await
            .err()
            .expect("it exits");
        assert!(matches!(error, ServerError::Exited { .. }), "{error}");
    }
}
