//! Several nodes over a real `redis-server` act as one server (docs/protocol.md C1–C6).
//! Each test starts its own Redis on a free port (killed at the end) and its own nodes.
//! Without `redis-server` installed these tests fail and say how to install it.

mod common;
use common::*;

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{BusError, Config, Error, Fault, Server, ServerHandle};
use redis_process::RedisProcess;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn redis() -> RedisProcess {
    RedisProcess::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A node named `id` on the bus at `url`.
async fn node_on(url: &str, id: &str, fault: Option<Fault>) -> ServerHandle {
    start(Config {
        server_id: id.into(),
        bus: Some(url.into()),
        fault,
        ..Config::default()
    })
    .await
}

/// `n` nodes on the bus at `url`, named a, b, c, ….
async fn nodes(url: &str, n: usize) -> Vec<ServerHandle> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let id = ((b'a' + i as u8) as char).to_string();
        nodes.push(node_on(url, &id, None).await);
    }
    nodes
}

/// Waits until a node's bus link is `up` (or not).
async fn wait_bus(node: &ServerHandle, up: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (node.metrics().bus_connected == 1) != up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bus never became {}",
            if up { "connected" } else { "disconnected" }
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next text, past any `settle` marker still on its way through the bus (a node
/// delivers what it hears to whoever is online *when it hears it*, M7).
async fn skip_settle(client: &mut Client, want: &str) {
    let mut text = client.text().await;
    while text.starts_with("settle -- FROM ") {
        text = client.text().await;
    }
    assert_eq!(text, want);
}

/// Waits until `done` (counters move a moment after the frames they count).
async fn until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never met"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The message `from` sends after everyone has logged in reaches every listed receiver
/// (the bus is asynchronous: a login on one node is known to the others only once its
/// notice has crossed the bus, so tests send after a marker round trip).
async fn settle(speaker: &mut Client, name: &str, listeners: &mut [&mut Client]) {
    speaker.send("settle").await;
    let want = format!("settle -- FROM {name}");
    for listener in listeners.iter_mut() {
        loop {
            if listener.text().await == want {
                break;
            }
        }
    }
}

#[tokio::test]
async fn c1_a_message_on_one_node_reaches_the_users_of_every_node_but_its_sender() {
    let redis = redis();
    let nodes = nodes(&redis.url(), 3).await;
    let mut ann = login(nodes[0].local_addr(), "ann").await;
    let mut bob = login(nodes[1].local_addr(), "bob").await;
    let mut cat = login(nodes[2].local_addr(), "cat").await;
    let mut dan = login(nodes[0].local_addr(), "dan").await;
    settle(&mut ann, "ann", &mut [&mut bob, &mut cat, &mut dan]).await;

    bob.send("hello from b").await;
    for receiver in [&mut ann, &mut cat, &mut dan] {
        assert_eq!(receiver.text().await, "hello from b -- FROM bob");
    }
    bob.expect_silence(Duration::from_millis(200)).await;
    ann.expect_silence(Duration::from_millis(100)).await;

    // Counted on both sides of the bus; no publication came back to its own node.
    let (a, b) = (nodes[0].metrics(), nodes[1].metrics());
    assert_eq!(b.bus_published, 1, "bob's node published its one message");
    assert_eq!(a.bus_published, 1, "ann's node published 'settle'");
    assert_eq!(a.bus_received, 1, "ann's node heard bob's message only");
    assert_eq!(nodes[2].metrics().bus_received, 2);
}

#[tokio::test]
async fn c2_a_senders_order_holds_across_nodes() {
    const MESSAGES: usize = 2000;
    let redis = redis();
    let nodes = nodes(&redis.url(), 3).await;
    let mut ann = login(nodes[0].local_addr(), "ann").await;
    let mut bob = login(nodes[1].local_addr(), "bob").await;
    let mut cat = login(nodes[2].local_addr(), "cat").await;
    settle(&mut ann, "ann", &mut [&mut bob, &mut cat]).await;

    let texts: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    ann.send_burst(&texts).await;
    for receiver in [&mut bob, &mut cat] {
        for i in 0..MESSAGES {
            assert_eq!(receiver.text().await, format!("m{i} -- FROM ann"));
        }
    }
}

#[tokio::test]
async fn c3_a_relogin_on_another_node_evicts_the_old_session() {
    let redis = redis();
    let nodes = nodes(&redis.url(), 2).await;
    let (a, b) = (nodes[0].local_addr(), nodes[1].local_addr());
    let mut old = login(a, "ann").await;
    let mut bob = login(a, "bob").await;
    settle(&mut bob, "bob", &mut [&mut old]).await;

    let mut new = login(b, "ann").await;
    old.expect_close(4001, "replaced by a new login").await;
    until(|| nodes[0].metrics().cross_node_evictions == 1).await;
    wait_online(&nodes[0], 1).await;

    // The new session is ann's, both ways, across the bus.
    new.send("i moved").await;
    assert_eq!(bob.text().await, "i moved -- FROM ann");
    bob.send("welcome").await;
    skip_settle(&mut new, "welcome -- FROM bob").await;
}

/// Logs in `name` on every node at once, `rounds` times, then asks which connections are
/// still sessions: a probe sent by `speaker` must reach exactly one of them, and every
/// other one must have been closed. Returns the rounds that broke C3, described.
async fn concurrent_logins(nodes: &[ServerHandle], rounds: usize) -> Vec<String> {
    let mut speaker = login(nodes[0].local_addr(), "speaker").await;
    let mut broken = Vec::new();
    for round in 0..rounds {
        let name = format!("race{round}");
        let logins: Vec<_> = nodes
            .iter()
            .map(|node| {
                let (addr, name) = (node.local_addr(), name.clone());
                tokio::spawn(async move { login(addr, &name).await })
            })
            .collect();
        let mut clients = Vec::new();
        for handle in logins {
            clients.push(handle.await.expect("login task"));
        }
        // Let every login notice cross the bus, then probe.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let probe = format!("probe {round}");
        speaker.send(&probe).await;
        let want = format!("{probe} -- FROM speaker");
        let (mut alive, mut closed) = (0, 0);
        for client in clients.iter_mut() {
            let mut outcome = None;
            while outcome.is_none() {
                match client.next_within(Duration::from_secs(2)).await {
                    Some(Seen::Text(text)) if text == want => outcome = Some(true),
                    Some(Seen::Close(..) | Seen::Dropped) => outcome = Some(false),
                    Some(_) => continue,
                    None => outcome = Some(false),
                }
            }
            if outcome == Some(true) {
                alive += 1;
            } else {
                closed += 1;
            }
        }
        if alive != 1 {
            broken.push(format!("{name}: {alive} live sessions, {closed} closed"));
        }
    }
    broken
}

#[tokio::test]
async fn c3_concurrent_logins_on_different_nodes_leave_exactly_one_session() {
    let redis = redis();
    let nodes = nodes(&redis.url(), 3).await;
    let broken = concurrent_logins(&nodes, 15).await;
    assert!(broken.is_empty(), "C3 broken: {broken:?}");
}

#[tokio::test]
async fn c3_the_check_fails_on_nodes_that_evict_only_their_own_sessions() {
    let redis = redis();
    let url = redis.url();
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(node_on(&url, id, Some(Fault::LocalEvictionOnly)).await);
    }
    let broken = concurrent_logins(&nodes, 3).await;
    assert_eq!(
        broken.len(),
        3,
        "every round must show several sessions: {broken:?}"
    );
}

/// A TCP proxy to Redis for one node that the test can cut (every connection through it
/// is dropped, new ones refused) and restore: a bus outage of that node alone.
struct BusLine {
    addr: SocketAddr,
    open: watch::Sender<bool>,
}

impl BusLine {
    async fn to(redis: SocketAddr) -> BusLine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, watch) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let open = *watch.borrow();
                if !open {
                    continue; // refused: dropped at once
                }
                let mut cut = watch.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(redis).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    let cut_off = async move {
                        let _ = cut.wait_for(|open| !*open).await;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_off => {}
                    }
                    let _ = client.shutdown().await;
                });
            }
        });
        BusLine { addr, open }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

#[tokio::test]
async fn c4_a_node_cut_off_the_bus_serves_locally_refuses_logins_and_resynchronises() {
    let redis = redis();
    let line = BusLine::to(redis.addr()).await;
    let a = node_on(&line.url(), "a", None).await;
    let b = node_on(&redis.url(), "b", None).await;
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    let mut ann = login(a_addr, "ann").await;
    let mut dan = login(a_addr, "dan").await;
    let mut bob = login(b_addr, "bob").await;
    settle(&mut ann, "ann", &mut [&mut dan, &mut bob]).await;

    line.cut();
    wait_bus(&a, false).await;
    // Local delivery goes on; what could not be forwarded is counted.
    ann.send("local only").await;
    assert_eq!(dan.text().await, "local only -- FROM ann");
    bob.expect_silence(Duration::from_millis(300)).await;
    until(|| a.metrics().bus_unforwarded >= 1).await;
    // New logins are refused before the upgrade, with a reason, and counted.
    let refused = upgrade_raw(TcpStream::connect(a_addr).await.unwrap(), b"/?user=eve").await;
    match refused {
        Err((503, body)) => assert!(body.contains("cluster bus unavailable"), "{body}"),
        Err(other) => panic!("expected 503, got {other:?}"),
        Ok(_) => panic!("a login was accepted with the bus down"),
    }
    assert_eq!(a.metrics().refused_bus_unavailable, 1);
    assert_eq!(
        metric_labeled(
            a_addr,
            "chat_refused_handshakes_total",
            "reason=\"bus_unavailable\""
        )
        .await,
        1
    );
    assert_eq!(metric(a_addr, "chat_bus_connected").await, 0);

    // Meanwhile ann logs in on b, which node a cannot hear: for now two sessions.
    let mut ann_on_b = login(b_addr, "ann").await;
    ann.expect_silence(Duration::from_millis(200)).await;

    // Once a's line is back, a resynchronises: ann's old session is closed within the
    // stated bound (backoff cap + two response timeouts + a round trip).
    line.restore();
    let bound = Duration::from_secs(1 + 2 + 1);
    match ann.next_within(bound).await {
        Some(Seen::Close(Some(4001), _)) => {}
        other => panic!("expected ann on a to be closed after the resync, got {other:?}"),
    }
    wait_bus(&a, true).await;
    until(|| a.metrics().cross_node_evictions == 1).await;
    // And the cluster is one server again.
    dan.send("back").await;
    skip_settle(&mut ann_on_b, "back -- FROM dan").await;
    assert_eq!(bob.text().await, "back -- FROM dan");
    login(a_addr, "eve").await;
}

#[tokio::test]
async fn c4_a_redis_restart_loses_the_counter_but_no_name_gets_two_sessions() {
    let mut redis = redis();
    let url = redis.url();
    let nodes = nodes(&url, 2).await;
    let (a, b) = (nodes[0].local_addr(), nodes[1].local_addr());
    let mut ann = login(a, "ann").await;
    let mut bob = login(b, "bob").await;
    settle(&mut bob, "bob", &mut [&mut ann]).await;

    redis.stop();
    for node in &nodes {
        wait_bus(node, false).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.resume().unwrap_or_else(|e| panic!("{e}"));
    for node in &nodes {
        wait_bus(node, true).await;
    }
    // Redis came back empty; a new login of ann on b must still be newer than a's.
    let mut ann_on_b = login(b, "ann").await;
    ann.expect_close(4001, "replaced by a new login").await;
    bob.send("hi").await;
    skip_settle(&mut ann_on_b, "hi -- FROM bob").await;
    assert!(nodes.iter().all(|n| n.metrics().bus_connected == 1));
}

#[tokio::test]
async fn c5_a_node_that_stops_takes_only_its_own_sessions() {
    let redis = redis();
    let mut nodes = nodes(&redis.url(), 2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let mut ann = login(a.local_addr(), "ann").await;
    let mut bob = login(b.local_addr(), "bob").await;
    let mut cat = login(b.local_addr(), "cat").await;
    settle(&mut bob, "bob", &mut [&mut ann, &mut cat]).await;

    let a_addr = a.local_addr();
    drop(a); // the node goes away (its sessions are closed)
    let (end, _) = ann.until_end().await;
    assert!(matches!(end, Seen::Close(..) | Seen::Dropped), "{end:?}");
    assert!(TcpStream::connect(a_addr).await.is_err());
    bob.send("still here").await;
    assert_eq!(cat.text().await, "still here -- FROM bob");
    // ann logs in again elsewhere at once.
    let mut ann = login(b.local_addr(), "ann").await;
    cat.send("welcome back").await;
    assert_eq!(ann.text().await, "welcome back -- FROM cat");
}

#[tokio::test]
async fn nodes_report_the_bus_in_metrics_and_probe_its_round_trip() {
    let redis = redis();
    let nodes = nodes(&redis.url(), 2).await;
    let a = nodes[0].local_addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(a, "chat_bus_round_trip_seconds_count").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bus round trip measured"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(a, b"/metrics", false).await;
    assert_eq!(status, 200);
    for name in [
        "chat_bus_connected{server_id=\"a\"} 1",
        "chat_bus_published_total{server_id=\"a\"}",
        "chat_bus_received_total{server_id=\"a\"}",
        "chat_bus_unforwarded_total{server_id=\"a\"}",
        "chat_cross_node_evictions_total{server_id=\"a\"}",
        "chat_bus_round_trip_seconds_bucket{server_id=\"a\",le=\"+Inf\"}",
        "reason=\"bus_unavailable\"",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    // A single node has no bus metrics at all (C6).
    let single = start_default().await;
    let (_, body) = http_get(single.local_addr(), b"/metrics", false).await;
    assert!(!body.contains("chat_bus_"), "{body}");
}

#[tokio::test]
async fn a_node_that_cannot_reach_its_bus_does_not_start_and_says_why() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        bus: Some(format!("redis://127.0.0.1:{port}")),
        ..Config::default()
    };
    match Server::start(config).await {
        Err(Error::Bus(BusError::Unreachable { url, .. })) => {
            assert!(url.contains(&port.to_string()))
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started without its bus"),
    }
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        bus: Some("http://example".into()),
        ..Config::default()
    };
    match Server::start(config).await {
        Err(error @ Error::Bus(BusError::Url { .. })) => {
            assert!(error.to_string().contains("redis://HOST:PORT"), "{error}")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started with a bad bus URL"),
    }
}

#[tokio::test]
async fn nodes_with_reuse_port_share_one_address() {
    let redis = redis();
    let first = Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        bus: Some(redis.url()),
        reuse_port: true,
        server_id: "a".into(),
        ..Config::default()
    })
    .await
    .expect("first node starts");
    let shared = first.local_addr();
    let second = Server::start(Config {
        listen: shared,
        bus: Some(redis.url()),
        reuse_port: true,
        server_id: "b".into(),
        ..Config::default()
    })
    .await
    .expect("second node binds the same address");
    assert_eq!(second.local_addr(), shared);
    // Users of both nodes, on one address, are one chat.
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(login(shared, &format!("u{i}")).await);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while first.online() + second.online() != 8 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first_user, rest) = users.split_first_mut().expect("users");
    let mut rest: Vec<&mut Client> = rest.iter_mut().collect();
    settle(first_user, "u0", &mut rest).await;
}
