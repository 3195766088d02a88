//! `[users] source_addresses` and `--source-address`, end to end: the loadgen binary
//! against a real chat-server on loopback, through a recording proxy that notes which
//! address each login came from (chat-server does not say), and the ways a source can
//! be refused: not an address, given twice, of the other family, not on this machine.

mod launch;
mod scratch;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Output;
use std::sync::{Arc, Mutex};

use chat_server::{Config, Server, ServerHandle};
use launch::loadgen;
use scratch::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// 20 users, broadcast and relogins (so the probe user logs in too), two sources.
const TWO_SOURCES: &str = r#"
[users]
count = 20
connect_over = "100ms"
source_addresses = ["127.0.0.2", "127.0.0.3"]

[[phase]]
duration = "2s"
rate = 20
senders = 10
relogin_rate = 2

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
max_connect_errors = 0
"#;

/// Writes `scenario` to a scratch file and runs it against `target` with `extra` flags.
async fn run(scenario: &str, target: &str, extra: &[&str]) -> (Output, TempDir) {
    let dir = TempDir::new("sources");
    let file = dir.path().join("sources.toml");
    std::fs::write(&file, scenario).expect("scenario written");
    let out = dir.path().join("report");
    let mut args = vec![
        "run",
        file.to_str().expect("a UTF-8 path"),
        "--quiet",
        "--out",
        out.to_str().expect("a UTF-8 path"),
        "--target",
        target,
    ];
    args.extend(extra);
    (loadgen(&args).await, dir)
}

async fn chat_server() -> ServerHandle {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..Config::default()
    })
    .await
    .expect("the server starts")
}

/// A loopback proxy in front of a server that notes, for every WebSocket login, the user
/// name and the address the connection came from. Other connections (loadgen scraping
/// /metrics) are forwarded but not noted.
struct RecordingProxy {
    addr: SocketAddr,
    /// (user name, peer address) of every login, in order of arrival.
    logins: Arc<Mutex<Vec<(String, IpAddr)>>>,
    /// Every connection accepted, logins or not.
    accepted: Arc<Mutex<u32>>,
}

impl RecordingProxy {
    async fn start(upstream: SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let logins = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        tokio::spawn({
            let (logins, accepted) = (logins.clone(), accepted.clone());
            async move {
                while let Ok((client, peer)) = listener.accept().await {
                    *accepted.lock().expect("not poisoned") += 1;
                    tokio::spawn(forward(client, peer.ip(), upstream, logins.clone()));
                }
            }
        });
        RecordingProxy {
            addr,
            logins,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn logins(&self) -> Vec<(String, IpAddr)> {
        self.logins.lock().expect("not poisoned").clone()
    }

    fn accepted(&self) -> u32 {
        *self.accepted.lock().expect("not poisoned")
    }
}

/// Notes the login in the client's first bytes (`GET /?user=NAME HTTP/1.1`), then
/// forwards both ways until either side ends.
async fn forward(
    mut client: TcpStream,
    peer: IpAddr,
    upstream: SocketAddr,
    logins: Arc<Mutex<Vec<(String, IpAddr)>>>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let mut first = vec![0u8; 4096];
    let Ok(n @ 1..) = client.read(&mut first).await else {
        return;
    };
    let head = String::from_utf8_lossy(&first[..n]).into_owned();
    if let Some(name) = head
        .split_once("?user=")
        .and_then(|(_, rest)| rest.split([' ', '&']).next())
    {
        logins
            .lock()
            .expect("not poisoned")
            .push((name.to_string(), peer));
    }
    if server.write_all(&first[..n]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_connects_from_its_round_robin_source_address() {
    let server = chat_server().await;
    let proxy = RecordingProxy::start(server.local_addr()).await;
    let (output, _dir) = run(TWO_SOURCES, &proxy.url(), &[]).await;
    assert_eq!(output.status.code(), Some(0), "the run passes");
    let logins = proxy.logins();
    // 20 first logins, the probe user, and the relogins' new connections.
    assert!(logins.len() > 21, "{logins:?}");
    let sources = [ip("127.0.0.2"), ip("127.0.0.3")];
    let mut per_source: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for (name, peer) in &logins {
        // user<i> takes source i % 2; the probe user is index 20 (users.count).
        let index: usize = match name.strip_prefix("user") {
            Some("probe") => 20,
            Some(number) => number.parse().expect("user<index>"),
            None => panic!("unexpected login {name}"),
        };
        assert_eq!(*peer, sources[index % 2], "{name} came from {peer}");
        *per_source.entry(*peer).or_default() += 1;
    }
    assert!(per_source.values().all(|&n| n >= 10), "{per_source:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_address_flag_overrides_the_scenario() {
    let server = chat_server().await;
    let proxy = RecordingProxy::start(server.local_addr()).await;
    let short = TWO_SOURCES
        .replace("relogin_rate = 2", "")
        .replace("\"2s\"", "\"1s\"");
    let (output, _dir) = run(&short, &proxy.url(), &["--source-address", "127.0.0.4"]).await;
    assert_eq!(output.status.code(), Some(0), "the run passes");
    let logins = proxy.logins();
    assert_eq!(logins.len(), 20, "{logins:?}");
    assert!(
        logins.iter().all(|(_, peer)| *peer == ip("127.0.0.4")),
        "{logins:?}"
    );
    server.shutdown().await;
}

/// 192.0.2.1 (TEST-NET-1) is on no interface here, so binding to it fails with "Cannot
/// assign requested address" (on a machine with net.ipv4.ip_nonlocal_bind = 1 the bind
/// would pass and the connect fail instead, still naming the source).
#[tokio::test]
async fn a_source_address_not_on_this_machine_fails_every_login_naming_it() {
    let server = chat_server().await;
    let target = format!("ws://{}/", server.local_addr());
    let (output, _dir) = run(TWO_SOURCES, &target, &["--source-address", "192.0.2.1"]).await;
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no user could log in") && stderr.contains("192.0.2.1"),
        "{stderr}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_source_address_that_is_not_an_address_exits_2_naming_the_field() {
    let bad = TWO_SOURCES.replace("\"127.0.0.3\"", "\"127.0.0.256\"");
    let (output, _dir) = run(&bad, "ws://127.0.0.1:1/", &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("users.source_addresses[1]") && stderr.contains("127.0.0.256"),
        "{stderr}"
    );
    let output = loadgen(&["run", "../scenarios/smoke.toml", "--source-address", "nope"]).await;
    assert_eq!(output.status.code(), Some(2));
    let (output, _dir) = run(
        TWO_SOURCES,
        "ws://127.0.0.1:1/",
        &[
            "--source-address",
            "127.0.0.5",
            "--source-address",
            "127.0.0.5",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.5 is given twice"));
}

#[tokio::test]
async fn a_source_of_the_other_family_is_refused_before_any_connection() {
    let server = chat_server().await;
    let proxy = RecordingProxy::start(server.local_addr()).await;
    let (output, _dir) = run(TWO_SOURCES, &proxy.url(), &["--source-address", "::1"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("source address ::1 (IPv6) cannot reach") && stderr.contains("(IPv4)"),
        "{stderr}"
    );
    assert_eq!(proxy.accepted(), 0, "no connection was made");
    server.shutdown().await;
}
