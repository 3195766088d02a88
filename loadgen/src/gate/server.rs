//! A server under test as a fresh local process for each gate run: started from a user's
//! command line with `{addr}` replaced by a free loopback address, waited for until it
//! accepts connections, measured (CPU seconds from `/proc/PID/stat`), and stopped with
//! SIGTERM (SIGKILL if it lingers).

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStdin, Command};

/// Why a server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
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
}

impl ServerProcess {
    /// Starts `template` (a shell command line with `{addr}`) on a free loopback port.
    pub async fn start(template: &str) -> Result<ServerProcess, ServerError> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(ServerError::Port)?;
        let command = template.replace("{addr}", &addr.to_string());
        // `exec` so that the measured PID is the server itself, not a shell around it.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            // Held open until stop: a server may treat the end of its input as a signal
            // to stop (as `loadgen serve` does).
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                command: command.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ServerError::Exited {
                    command,
                    status: status.to_string(),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let stdin = child.stdin.take();
                return Ok(ServerProcess {
                    child,
                    stdin,
                    pid,
                    addr,
                });
            }
            if Instant::now() > deadline {
                return Err(ServerError::NotListening { command, addr });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::resources::cpu_seconds(self.pid)
    }

    /// The process id (the server itself: the shell `exec`s it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        // SAFETY: kill(2) with a PID we started and have not reaped yet.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_exits_is_reported() {
        let error = ServerProcess::start("true {addr}")
            .await
            .err()
            .expect("it exits");
        assert!(matches!(error, ServerError::Exited { .. }), "{error}");
    }
}
