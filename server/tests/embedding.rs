//! The embedder's API over real sockets: serving a listener the caller bound, reading the
//! counters as a snapshot.

mod common;
use common::*;

use chat_server::{Config, MetricsSnapshot, Server, ServerHandle};
use std::time::Duration;

use tokio::net::TcpListener;

/// Polls the snapshot until `done` holds; fails the test after [`WAIT`].
async fn wait_snapshot(
    server: &ServerHandle,
    done: impl Fn(&MetricsSnapshot) -> bool,
) -> MetricsSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snapshot = server.metrics();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters never got there: {snapshot:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn serve_runs_on_a_listener_the_caller_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = Server::serve(listener, Config::default())
        .await
        .expect("server starts");
    assert_eq!(server.local_addr(), addr);
    let mut ann = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    ann.send("hi").await;
    assert_eq!(bob.text().await, "hi -- FROM ann");
    assert!(server.shutdown().await, "connections left over");
}

#[tokio::test]
async fn serve_refuses_an_invalid_config_like_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = Config {
        queue: 0,
        ..Config::default()
    };
    match Server::serve(listener, config).await {
        Err(chat_server::Error::Config(why)) => assert!(why.contains("queue"), "{why}"),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("a zero queue was accepted"),
    }
}

#[tokio::test]
async fn no_duration_setting_can_panic_the_server() {
    let day = Duration::from_secs(24 * 3600);
    let too_long = [day + Duration::from_secs(1), Duration::MAX];
    let pings = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(9),
    ];
    let mut refused = Vec::new();
    for value in pings.iter().chain(&too_long) {
        refused.push(Config {
            ping_interval: *value,
            ..test_config()
        });
    }
    for value in [Duration::ZERO].iter().chain(&too_long) {
        refused.push(Config {
            close_timeout: *value,
            ..test_config()
        });
        refused.push(Config {
            drain_timeout: *value,
            ..test_config()
        });
    }
    for config in refused {
        let shown = format!("{config:?}");
        match Server::start(config).await {
            Err(chat_server::Error::Config(why)) => assert!(why.contains("must be"), "{why}"),
            Err(other) => panic!("expected a config error for {shown}, got {other}"),
            Ok(_) => panic!("accepted: {shown}"),
        }
    }
    // The bounds themselves are accepted.
    let server = Server::start(Config {
        ping_interval: Duration::from_millis(10),
        drain_timeout: Duration::from_secs(24 * 3600),
        ..test_config()
    })
    .await
    .expect("the bounds are valid");
    server.shutdown().await;
}

fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        ..Config::default()
    }
}

#[tokio::test]
async fn metrics_snapshot_counts_what_the_clients_did() {
    let server = start_default().await;
    let addr = server.local_addr();
    assert_eq!(server.metrics(), MetricsSnapshot::default());
    let mut ann = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    ann.send("one").await;
    assert_eq!(bob.text().await, "one -- FROM ann");
    let (status, _) = http_get(addr, b"/?user=", true).await;
    assert_eq!(status, 400);
    let snapshot = wait_snapshot(&server, |m| m.deliveries_out == 1).await;
    assert_eq!(snapshot.logins, 2);
    assert_eq!(snapshot.sessions_online, 2);
    assert_eq!(snapshot.messages_in, 1);
    assert_eq!(snapshot.refused_logins, 1);
    assert_eq!(snapshot.evictions, 0);
    assert!(snapshot.bytes_out > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handle_closes_sessions_and_stops_accepting() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login(addr, "ann").await;
    wait_online(&server, 1).await;

    drop(server);
    match ann.next().await {
        Seen::Close(Some(1001), _) => {}
        other => panic!("expected Close 1001 after the drop, got {other:?}"),
    }
    // The listener closes as soon as the accept loop sees the signal; until then a
    // connection may still be made (and is closed without being served).
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections {WAIT:?} after the handle was dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
