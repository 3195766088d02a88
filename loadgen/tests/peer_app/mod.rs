//! The foreign chat servers of `tests/peers/` (a Socket.IO 4 app and a JSON chat on node
//! `ws`), started on a free loopback port for one test and stopped when dropped; with a
//! deliberate fault when a test must show a check failing.
//!
//! Needs Node.js and the apps' packages: `cd loadgen/tests/peers && npm ci`
//! (scripts/test.sh and .ci/run do it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which app.
#[derive(Debug, Clone, Copy)]
pub enum App {
    SocketIo,
    JsonChat,
}

/// A running app; killed when dropped (and it exits by itself when its stdin closes).
pub struct PeerApp {
    pub port: u16,
    child: Child,
}

/// The apps' folder, checked to be ready to run.
pub fn peers_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "this test needs Node.js (apt-get install -y nodejs npm)"
    );
    assert!(
        dir.join("node_modules/socket.io").is_dir() && dir.join("node_modules/ws").is_dir(),
        "this test needs the peers' packages: cd {} && npm ci",
        dir.display()
    );
    dir
}

/// The `[protocol]` table of `scenarios/FILE`, as its users are shown it.
pub fn protocol_table(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("the scenario file reads");
    let start = text.find("[protocol]").expect("a [protocol] table");
    let rest = &text[start..];
    let end = rest[1..].find("\n[").map_or(rest.len(), |at| at + 2);
    rest[..end].to_string()
}

/// The path of `scenarios/FILE`, for `--protocol FILE`.
pub fn scenario_path(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    path.to_str().expect("a UTF-8 path").to_string()
}

impl PeerApp {
    /// Starts `app` with these extra flags (`--fault drop:7`, `--ping-interval 200`).
    pub async fn start(app: App, flags: &[&str]) -> PeerApp {
        let dir = peers_dir();
        let script = match app {
            App::SocketIo => "socketio-chat.mjs",
            App::JsonChat => "json-chat.mjs",
        };
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("the app starts within 20 s")
            .expect("its stdout reads")
            .expect("a line");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the app said {line:?}"));
        PeerApp { port, child }
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The app's `/stats`: broadcasts, deliveries, dropped, evictions, online.
    pub async fn stats(&self) -> serde_json::Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("the app answers");
        stream
            .write_all(b"GET /stats HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("a request");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("an answer");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|_| panic!("stats: {text}"))
    }
}

impl Drop for PeerApp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
