//! End-to-end tests of `loadgen client`: real processes talking through chat-server on
//! loopback — two users exchange messages, a relogin evicts the first client (exit 4),
//! piped stdin is sent and then closed cleanly, and Ctrl-C closes cleanly; and the same
//! by hand against a Socket.IO app and a JSON chat (`--protocol`).

use std::process::Stdio;
use std::time::Duration;

mod peer_app;

use chat_server::{Config, Server, ServerHandle};
use peer_app::{App, PeerApp};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const WAIT: Duration = Duration::from_secs(10);

/// Exit code of an evicted client (documented in cli.rs).
const EVICTED: i32 = 4;

struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Client {
    /// Starts `loadgen client URL --user NAME` and waits until it has logged in.
    async fn start(server: &ServerHandle, user: &str, extra: &[&str]) -> Client {
        Client::start_at(&format!("ws://{}/", server.local_addr()), user, extra).await
    }

    /// Starts `loadgen client URL --user NAME` with `extra` flags and waits until it has
    /// logged in.
    async fn start_at(url: &str, user: &str, extra: &[&str]) -> Client {
        let url = url.to_string();
        let mut child = Command::new(LOADGEN)
            .env("LOADGEN_CALIBRATION", "quick")
            .args(["client", &url, "--user", user])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("loadgen client starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut client = Client {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        };
        client.stderr_line("connected to").await;
        client
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to client");
        stdin.flush().await.expect("flush");
    }

    /// The next stdout line containing `text`.
    async fn stdout_line(&mut self, text: &str) -> String {
        wait_line(&mut self.stdout, text).await
    }

    /// The next stderr line containing `text`.
    async fn stderr_line(&mut self, text: &str) -> String {
        wait_line(&mut self.stderr, text).await
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("client exits in time")
            .expect("wait");
        status.code().unwrap_or(-1)
    }
}

async fn wait_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>, text: &str) -> String {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read line") {
            eprintln!("client: {line}");
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("output ended without {text:?}"),
        Err(_) => panic!("no line with {text:?} within {WAIT:?}"),
    }
}

async fn chat_server() -> ServerHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    };
    Server::start(config).await.expect("server starts")
}

/// Lets a fresh login register before others send to it (the protocol does not promise
/// delivery to a session that is not registered yet, M7).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_messages_and_relogin_evicts_the_first() {
    let server = chat_server().await;
    let mut ann = Client::start(&server, "ann", &[]).await;
    let mut bob = Client::start(&server, "bob", &[]).await;
    settle().await;

    ann.send("hello bob").await;
    let line = bob.stdout_line("hello bob -- FROM ann").await;
    // Local time first: HH:MM:SS.mmm
    let time = line.split_whitespace().next().expect("time");
    assert_eq!(time.len(), 12, "{line}");
    assert_eq!(&time[2..3], ":");

    bob.send("hi ann, 张三 says hi").await;
    ann.stdout_line("hi ann, 张三 says hi -- FROM bob").await;

    // A second login of ann evicts the first client.
    let mut ann_again = Client::start(&server, "ann", &[]).await;
    let evicted = ann.stderr_line("evicted").await;
    assert!(evicted.contains("4001"), "{evicted}");
    assert!(evicted.contains("replaced by a new login"), "{evicted}");
    assert_eq!(ann.exit_code().await, EVICTED);

    // The new session is ann's now.
    settle().await;
    bob.send("still there?").await;
    ann_again.stdout_line("still there? -- FROM bob").await;

    ann_again.send("/quit").await;
    let closed = ann_again.stderr_line("closed").await;
    assert!(closed.contains("Close 1000"), "{closed}");
    assert_eq!(ann_again.exit_code().await, 0);

    drop(bob.stdin.take()); // EOF
    bob.stderr_line("closed").await;
    assert_eq!(bob.exit_code().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_is_sent_then_closed_cleanly() {
    let server = chat_server().await;
    let mut observer = Client::start(&server, "watcher", &[]).await;
    settle().await;
    let url = format!("ws://{}/", server.local_addr());
    let output = tokio::time::timeout(WAIT, async {
        let mut child = Command::new(LOADGEN)
            .env("LOADGEN_CALIBRATION", "quick")
            .args(["client", &url, "--user", "scripted"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"one\ntwo\n").await.expect("write");
        drop(stdin);
        child.wait_with_output().await.expect("client runs")
    })
    .await
    .expect("piped client exits in time");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("end of input"), "{stderr}");
    observer.stdout_line("one -- FROM scripted").await;
    observer.stdout_line("two -- FROM scripted").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_every_repeats_and_ctrl_c_closes_cleanly() {
    let server = chat_server().await;
    let mut observer = Client::start(&server, "listener", &[]).await;
    settle().await;
    let mut demo = Client::start(
        &server,
        "demo",
        &["--send-every", "100ms", "--message", "tick"],
    )
    .await;
    observer.stdout_line("tick -- FROM demo").await;
    observer.stdout_line("tick -- FROM demo").await;
    let pid = demo.child.id().expect("pid") as i32;
    // SAFETY: sending SIGINT to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let closed = demo.stderr_line("closed").await;
    assert!(closed.contains("interrupted"), "{closed}");
    assert_eq!(demo.exit_code().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_exits_3() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let output = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["client", &format!("ws://127.0.0.1:{port}/"), "--user", "x"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("client runs");
    assert_eq!(output.status.code(), Some(3));
}

/// Under `--protocol`, lines typed are sent in the protocol's frames, deliveries are
/// printed, pings are answered, and a relogin's eviction ends the first client with 4.
async fn two_users_talk_and_a_relogin_evicts(app: App, protocol: &str) {
    let server = PeerApp::start(app, &["--ping-interval", "200"]).await;
    let url = server.url();
    let mut ann = Client::start_at(&url, "ann", &["--protocol", protocol]).await;
    let mut bob = Client::start_at(&url, "bob", &["--protocol", protocol]).await;
    bob.send("hello from bob").await;
    let line = ann.stdout_line("hello from bob").await;
    assert!(line.contains("bob"), "{line}");
    // Past two ping intervals: a client that did not answer would have been cut.
    tokio::time::sleep(Duration::from_millis(700)).await;
    ann.send("still here").await;
    bob.stdout_line("still here").await;
    let _again = Client::start_at(&url, "ann", &["--protocol", protocol]).await;
    assert_eq!(ann.exit_code().await, EVICTED);
    bob.stdin.take();
    assert_eq!(bob.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socketio_user_by_hand() {
    two_users_talk_and_a_relogin_evicts(App::SocketIo, "socketio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_chat_user_by_hand() {
    // A scenario file holds the [protocol] table --protocol reads.
    let protocol = peer_app::scenario_path("json-chat.toml");
    two_users_talk_and_a_relogin_evicts(App::JsonChat, &protocol).await;
}
