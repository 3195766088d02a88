//! A real `redis-server` for the cluster's tests and benchmarks (docs/protocol.md C1–C6):
//! started on a free loopback port with nothing persisted, stopped and started again on
//! the same port (to show a bus outage), and killed when dropped, so a failing test never
//! leaves one behind.
//!
//! Tests need the real thing: when `redis-server` is not installed this fails with the
//! command that installs it, never a silent skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install the server when it is missing.
pub const INSTALL: &str = "apt-get install -y redis-server (Debian/Ubuntu)";

/// How long a started server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Why a Redis server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisProcessError {
    #[error("redis-server is not installed (not found on PATH); install it: {INSTALL}")]
    NotInstalled,
    #[error("cannot start redis-server: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("redis-server on {addr} did not answer PING within {READY_WITHIN:?}")]
    NotReady { addr: SocketAddr },
}

/// A running (or stopped) `redis-server` on 127.0.0.1.
#[derive(Debug)]
pub struct RedisProcess {
    addr: SocketAddr,
    binary: PathBuf,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start() -> Result<RedisProcess, RedisProcessError> {
        let binary = find_binary().ok_or(RedisProcessError::NotInstalled)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(RedisProcessError::Port)?
            .port();
        let mut redis = RedisProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            binary,
            child: None,
        };
        redis.resume()?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT`, for `--bus`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server (everything in it is lost: it persists nothing) and waits for it
    /// to exit. Connections to it break at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers PING.
    pub fn resume(&mut self) -> Result<(), RedisProcessError> {
        self.stop();
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(["--loglevel", "warning", "--dir"])
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(RedisProcessError::Spawn)?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if ping(self.addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(RedisProcessError::NotReady { addr: self.addr })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis server answers PING at `addr`.
pub fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// `redis-server` on PATH (or in /usr/sbin, /usr/bin, where Debian puts it).
fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/bin".into(),
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_resumes_on_the_same_port() {
        let mut redis = RedisProcess::start().unwrap_or_else(|e| panic!("{e}"));
        assert!(ping(redis.addr()));
        assert!(redis.url().starts_with("redis://127.0.0.1:"));
        redis.stop();
        assert!(!ping(redis.addr()));
        redis.resume().unwrap_or_else(|e| panic!("{e}"));
        assert!(ping(redis.addr()));
        let addr = redis.addr();
        drop(redis);
        assert!(!ping(addr));
    }
}
