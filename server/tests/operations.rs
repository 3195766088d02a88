//! Operations rules O1–O4 of docs/protocol.md: health and metrics, keepalive, shutdown.

mod common;
use common::*;

use std::time::Duration;

use chat_server::Config;

#[tokio::test]
async fn o1_healthz_answers_200_ok() {
    let server = start_default().await;
    let (status, body) = http_get(server.local_addr(), b"/healthz", false).await;
    assert_eq!((status, body.trim_end()), (200, "ok"));
}

#[tokio::test]
async fn o1_metrics_count_what_the_clients_did() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (status, body) = http_get(addr, b"/metrics", false).await;
    assert_eq!(status, 200);
    for name in [
        "chat_sessions_online",
        "chat_logins_total",
        "chat_evictions_total",
        "chat_messages_in_total",
        "chat_deliveries_out_total",
        "chat_slow_consumer_disconnects_total",
        "chat_refused_handshakes_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "/metrics lacks {name}"
        );
        assert_eq!(
            metric(addr, name).await,
            0,
            "{name} before anything happened"
        );
    }

    let mut old_ann = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    let mut cat = login(addr, "cat").await;
    wait_online(&server, 3).await;
    let mut ann = login(addr, "ann").await;
    old_ann.expect_close(4001, "replaced by a new login").await;
    assert_eq!(wait_metric(addr, "chat_logins_total", 4).await, 4);

    for n in 0..5 {
        ann.send(&format!("a{n}")).await;
    }
    for n in 0..2 {
        bob.send(&format!("b{n}")).await;
    }
    for n in 0..5 {
        assert_eq!(bob.text().await, format!("a{n} -- FROM ann"));
    }
    for n in 0..2 {
        assert_eq!(ann.text().await, format!("b{n} -- FROM bob"));
    }
    let mut at_cat = Vec::new();
    for _ in 0..7 {
        at_cat.push(cat.text().await);
    }
    assert_eq!(at_cat.len(), 7);
    let (status, _) = http_get(addr, b"/?user=", true).await;
    assert_eq!(status, 400);

    // 5 messages to 2 receivers and 2 messages to 2 receivers.
    assert_eq!(wait_metric(addr, "chat_deliveries_out_total", 14).await, 14);
    assert_eq!(metric(addr, "chat_messages_in_total").await, 7);
    assert_eq!(metric(addr, "chat_logins_total").await, 4);
    assert_eq!(metric(addr, "chat_evictions_total").await, 1);
    assert_eq!(metric(addr, "chat_sessions_online").await, 3);
    assert_eq!(
        metric(addr, "chat_slow_consumer_disconnects_total").await,
        0
    );
    assert_eq!(metric(addr, "chat_refused_handshakes_total").await, 1);
    assert_eq!(
        metric_labeled(
            addr,
            "chat_refused_handshakes_total",
            "reason=\"empty_user\""
        )
        .await,
        1
    );
}

#[tokio::test]
async fn o1_metrics_carry_the_server_id() {
    let server = start(Config {
        server_id: "node-7".into(),
        ..Config::default()
    })
    .await;
    let (_, body) = http_get(server.local_addr(), b"/metrics", false).await;
    assert!(body.contains("chat_logins_total{server_id=\"node-7\"} 0"));
}

/// The Prometheus process collector's two metrics, unlabeled, so a load generator can read
/// a remote server's CPU and memory.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn o1_metrics_carry_process_cpu_and_resident_memory() {
    let server = start_default().await;
    let (status, body) = http_get(server.local_addr(), b"/metrics", false).await;
    assert_eq!(status, 200);
    let sample = |name: &str, kind: &str| -> f64 {
        assert!(
            body.contains(&format!("\n# TYPE {name} {kind}\n")),
            "/metrics lacks the {kind} {name}"
        );
        let prefix = format!("{name} ");
        let line = body
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no unlabeled sample of {name} in /metrics"));
        line[prefix.len()..]
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    let cpu = sample("process_cpu_seconds_total", "counter");
    assert!(cpu.is_finite() && cpu >= 0.0, "cpu seconds {cpu}");
    let resident = sample("process_resident_memory_bytes", "gauge");
    assert!(resident > (1 << 20) as f64, "resident bytes {resident}");
}

/// Several clients that answer every Ping, logged in a few ms apart so that their last
/// answers fall at different points between the server's idle checks, and one client that
/// never reads (so never answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o2_clients_that_answer_pings_stay_and_a_silent_one_is_dropped() {
    const KEEPERS: usize = 8;
    let interval = Duration::from_millis(200);
    let server = start(Config {
        ping_interval: interval,
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let mut silent = login(addr, "silent").await; // never read, so it never answers a Ping
    let mut listening = Vec::new();
    for k in 0..KEEPERS {
        let mut keeper = login(addr, &format!("keeper{k}")).await;
        // fastwebsockets answers Pings inside read_frame without returning them, so
        // nothing at all may arrive for 5 intervals.
        listening.push(tokio::spawn(async move {
            let seen = keeper.next_within(5 * interval).await;
            (keeper, seen)
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut keepers = Vec::new();
    for (k, task) in listening.into_iter().enumerate() {
        let (keeper, seen) = task.await.expect("keeper task");
        assert_eq!(
            seen, None,
            "keeper{k}, answering every Ping, was sent something"
        );
        keepers.push(keeper);
    }
    wait_online(&server, KEEPERS).await; // the silent one is gone ...
    assert_eq!(wait_metric(addr, "chat_idle_disconnects_total", 1).await, 1);
    // ... and was told so (or just dropped).
    match silent.until_end().await {
        (Seen::Close(Some(4002), reason), _) => assert_eq!(reason, "idle timeout"),
        (Seen::Dropped, _) => {}
        other => panic!("the silent client ended with {other:?}"),
    }

    // The keepers are still online and still receive.
    let mut talker = login(addr, "talker").await;
    wait_online(&server, KEEPERS + 1).await;
    talker.send("you there?").await;
    for keeper in &mut keepers {
        assert_eq!(keeper.text().await, "you there? -- FROM talker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o3_shutdown_sends_1001_to_everyone_and_refuses_new_connections() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    let mut holder = login(addr, "holder").await; // never reads nor answers the Close
    wait_online(&server, 3).await;

    let shutting_down = tokio::spawn(server.shutdown());
    for client in [&mut ann, &mut bob] {
        match client.next().await {
            Seen::Close(Some(1001), _) => {}
            other => panic!("expected Close 1001, got {other:?}"),
        }
        client
            .send_frame(fastwebsockets::Frame::close(1001, b""))
            .await;
    }
    let drained = tokio::time::timeout(2 * WAIT, shutting_down)
        .await
        .expect("shutdown finishes in a bounded time")
        .expect("shutdown task");
    assert!(drained, "shutdown reported connections left over");
    match holder.next().await {
        Seen::Close(Some(1001), _) => {}
        other => panic!("the holder got {other:?} instead of Close 1001"),
    }

    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a connection was accepted after shutdown"
    );
}

#[test]
fn o4_defaults_match_the_demo() {
    let config = Config::default();
    assert_eq!(config.listen, "0.0.0.0:6789".parse().unwrap());
    assert_eq!(config.server_id, "1");
    assert_eq!(config.ping_interval, Duration::from_secs(30));
    assert_eq!(config.max_message, 64 * 1024);
    assert_eq!(config.max_name, 64);
}
