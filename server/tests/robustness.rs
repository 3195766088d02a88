//! Black-box tests of the robustness rules (docs/protocol.md R1–R7), one test per rule
//! (or per case of one), named after it: real server on a loopback port, hand-written
//! requests and frames, since the point is what a hostile or sloppy client sends.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A handshake that R1 allows, with `{method}`, `{version}` and `{ws}` to break.
const HANDSHAKE: &str = "{method} /?user=ann {version}\r\nHost: localhost\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {ws}\r\n\r\n";

fn handshake(method: &str, version: &str, ws: &str) -> String {
    HANDSHAKE
        .replace("{method}", method)
        .replace("{version}", version)
        .replace("{ws}", ws)
}

/// Sends `request` on a fresh connection; returns the status and the response head.
async fn answer(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read_u8()).await {
            Ok(Ok(byte)) => head.push(byte),
            Ok(Err(_)) => break,
            Err(_) => panic!("no answer in time to {request:?}"),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn r1_only_get_upgrades() {
    let server = start_default().await;
    let addr = server.local_addr();
    for method in ["POST", "PUT", "DELETE"] {
        let (status, head) = answer(addr, &handshake(method, "HTTP/1.1", "13")).await;
        assert_eq!(status, 405, "{method}: {head}");
        assert_eq!(header(&head, "allow"), Some("GET"), "{head}");
    }
    let (status, _) = answer(addr, &handshake("GET", "HTTP/1.1", "13")).await;
    assert_eq!(status, 101, "the same request with GET is a login");
    assert_eq!(
        metric(addr, "chat_logins_total").await,
        1,
        "only the GET logged in"
    );
}

#[tokio::test]
async fn r1_an_http_1_0_upgrade_is_refused_with_400() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (status, head) = answer(addr, &handshake("GET", "HTTP/1.0", "13")).await;
    assert_eq!(status, 400, "{head}");
    assert_eq!(metric(addr, "chat_logins_total").await, 0);
    assert_eq!(server.online(), 0);
}

#[tokio::test]
async fn r1_a_websocket_version_other_than_13_gets_426_naming_13() {
    let server = start_default().await;
    let addr = server.local_addr();
    for version in ["8", "12", "14", ""] {
        let (status, head) = answer(addr, &handshake("GET", "HTTP/1.1", version)).await;
        assert_eq!(status, 426, "version {version:?}: {head}");
        assert_eq!(header(&head, "sec-websocket-version"), Some("13"), "{head}");
    }
    let missing = handshake("GET", "HTTP/1.1", "13").replace("Sec-WebSocket-Version: 13\r\n", "");
    let (status, head) = answer(addr, &missing).await;
    assert_eq!(status, 426, "no version header: {head}");
    assert_eq!(
        metric(addr, "chat_logins_total").await,
        0,
        "no session opened"
    );
    assert_eq!(
        metric_labeled(
            addr,
            "chat_refused_handshakes_total",
            "reason=\"bad_handshake\""
        )
        .await,
        5,
        "each refusal is counted"
    );
}

/// A peer and a listener, both online; the listener must hear nothing from `offender`.
async fn offender_and_listener(server: &chat_server::ServerHandle) -> (Client, Client) {
    let addr = server.local_addr();
    let offender = login(addr, "mallory").await;
    let listener = login(addr, "bob").await;
    wait_online(server, 2).await;
    (offender, listener)
}

#[tokio::test]
async fn r2_an_unmasked_client_frame_closes_with_1002_and_is_not_broadcast() {
    let server = start_default().await;
    let (mut mallory, mut bob) = offender_and_listener(&server).await;
    mallory.ws.set_auto_apply_mask(false);
    mallory.send("unmasked").await;
    mallory
        .expect_close(1002, "client frames must be masked")
        .await;
    bob.expect_silence(std::time::Duration::from_millis(300))
        .await;
    assert_eq!(
        metric(server.local_addr(), "chat_messages_in_total").await,
        0
    );
}

#[tokio::test]
async fn r2_a_control_frame_over_125_bytes_closes_with_1002() {
    let server = start_default().await;
    let addr = server.local_addr();
    let big = vec![b'x'; 126];
    let frames = [
        frame(true, fastwebsockets::OpCode::Pong, &big),
        frame(true, fastwebsockets::OpCode::Ping, &big),
        fastwebsockets::Frame::close(1000, &big[..124]),
    ];
    for (i, oversized) in frames.into_iter().enumerate() {
        let mut peer = login(addr, &format!("peer{i}")).await;
        peer.send_frame(oversized).await;
        let (end, _) = peer.until_end().await;
        assert!(
            matches!(end, Seen::Close(Some(1002), _)),
            "frame {i}: expected Close 1002, got {end:?}"
        );
    }
    // 125 bytes is allowed.
    let mut peer = login(addr, "fine").await;
    peer.send_frame(frame(true, fastwebsockets::OpCode::Ping, &big[..125]))
        .await;
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    peer.send("hello").await;
    assert_eq!(bob.text().await, "hello -- FROM fine");
}

/// Logs `name` in twice, the second login sent only after the first one's `101` arrived;
/// `Ok` when the second is the survivor (the first is closed with 4001 and the second
/// receives what another user sends), else what went wrong.
async fn second_login_survives(
    addr: SocketAddr,
    name: &str,
    sender: &mut Client,
) -> Result<(), String> {
    let mut first = login(addr, name).await;
    let mut second = login(addr, name).await;
    match first.next_within(WAIT).await {
        Some(Seen::Close(Some(4001), _)) => {}
        other => return Err(format!("the first login was not evicted: {other:?}")),
    }
    let probe = format!("to {name}");
    sender.send(&probe).await;
    let expected = format!("{probe} -- FROM sender");
    loop {
        match second.next_within(std::time::Duration::from_secs(2)).await {
            Some(Seen::Text(text)) if text == expected => return Ok(()),
            Some(Seen::Text(_)) => continue,
            other => return Err(format!("the second login does not hear: {other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_a_login_is_registered_before_its_101() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut sender = login(addr, "sender").await;
    for round in 0..20 {
        second_login_survives(addr, &format!("user{round}"), &mut sender)
            .await
            .unwrap_or_else(|why| panic!("round {round}: {why}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_check_fails_on_a_server_that_registers_after_the_101() {
    let server = start(chat_server::Config {
        fault: Some(chat_server::Fault::RegisterAfter101),
        ..chat_server::Config::default()
    })
    .await;
    let addr = server.local_addr();
    // The 1st login registers at once, the 2nd (the victim's first) 100 ms late.
    let mut sender = login(addr, "sender").await;
    let outcome = second_login_survives(addr, "victim", &mut sender).await;
    assert!(outcome.is_err(), "the late registration went unnoticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_shutdown_writes_what_was_queued_before_the_1001() {
    const MESSAGES: usize = 256;
    let server = start(chat_server::Config {
        queue_bytes: 64 * 1024 * 1024,
        // Not about the sender's budget: let 15 MB in at once.
        inbound: chat_server::InboundBudget {
            bytes_per_sec: 1e9,
            ..chat_server::InboundBudget::default()
        },
        close_timeout: std::time::Duration::from_secs(5),
        drain_timeout: std::time::Duration::from_secs(10),
        ..chat_server::Config::default()
    })
    .await;
    let addr = server.local_addr();
    // A reader with a tiny receive buffer that does not read yet: most of the messages
    // are still in its queue on the server when shutdown begins.
    let mut reader = login_stalled(addr, "reader").await;
    let mut sender = login(addr, "sender").await;
    wait_online(&server, 2).await;
    let body = "x".repeat(60 * 1024);
    for i in 0..MESSAGES {
        sender.send(&format!("{i:03} {body}")).await;
    }
    wait_metric(addr, "chat_messages_in_total", MESSAGES as u64).await;
    let shutdown = tokio::spawn(server.shutdown());
    let (end, texts) = reader.until_end().await;
    assert_eq!(
        texts.len(),
        MESSAGES,
        "every queued message before the Close"
    );
    for (i, text) in texts.iter().enumerate() {
        assert!(
            text.starts_with(&format!("{i:03} ")),
            "message {i} out of place"
        );
    }
    assert!(matches!(end, Seen::Close(Some(1001), _)), "{end:?}");
    assert!(shutdown.await.expect("shutdown task"), "drained in time");
}

#[tokio::test]
async fn r5_a_login_beyond_the_session_limit_gets_503_before_the_upgrade() {
    let server = start(chat_server::Config {
        max_sessions: Some(3),
        ..chat_server::Config::default()
    })
    .await;
    let addr = server.local_addr();
    let ann = login(addr, "ann").await;
    let _bob = login(addr, "bob").await;
    let _cy = login(addr, "cy").await;
    wait_online(&server, 3).await;
    let (status, body) = http_get(addr, b"/?user=dee", true).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("server full"), "{body}");
    assert_eq!(
        metric_labeled(
            addr,
            "chat_refused_handshakes_total",
            "reason=\"server_full\""
        )
        .await,
        1
    );
    assert_eq!(server.online(), 3, "no session was opened");
    // A place that frees up can be taken again.
    ann.close().await;
    wait_online(&server, 2).await;
    let _dee = login(addr, "dee").await;
    wait_online(&server, 3).await;
}

#[test]
fn r5_the_server_raises_its_soft_open_file_limit() {
    // Lower the soft limit of this test process, start a server, and see it raised back.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let lowered = libc::rlimit {
            rlim_cur: 256.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lowered), 0);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let server = start_default().await;
        server.shutdown().await;
    });
    let mut after = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut after), 0);
    }
    assert_eq!(
        after.rlim_cur, limit.rlim_max,
        "soft limit raised to the hard limit"
    );
}

/// Reads until the server ends the connection; returns the bytes read, or `None` when it
/// was still open after `within`.
async fn read_to_end_within(
    stream: &mut TcpStream,
    within: std::time::Duration,
) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn r4_a_request_head_over_16_kib_gets_431() {
    let server = start_default().await;
    let addr = server.local_addr();
    let request = |pad: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let (status, _) = answer(addr, &request(12 * 1024)).await;
    assert_eq!(status, 200, "a 12 KiB head is fine");
    let (status, head) = answer(addr, &request(20 * 1024)).await;
    assert_eq!(status, 431, "{head}");
}

#[tokio::test]
async fn r4_a_request_head_must_arrive_within_the_header_timeout() {
    let server = start(chat_server::Config {
        header_timeout: std::time::Duration::from_millis(300),
        ..chat_server::Config::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /?user=slow HTTP/1.1\r\nHost: loc")
        .await
        .expect("send");
    let ended = read_to_end_within(&mut stream, std::time::Duration::from_secs(5)).await;
    assert!(
        ended.is_some(),
        "the half-sent head was still held after 5 s"
    );
    assert_eq!(server.online(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_a_client_that_does_not_read_its_responses_is_cut_off() {
    const REQUESTS: usize = 3_000;
    let server = start(chat_server::Config {
        unread_timeout: std::time::Duration::from_millis(500),
        ..chat_server::Config::default()
    })
    .await;
    let stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    // Pipeline every request and read nothing: the answers (a few KiB each) fill the
    // socket buffers and the server's writes stall.
    let requests = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(REQUESTS);
    let sender = tokio::spawn(async move {
        let _ = write.write_all(requests.as_bytes()).await;
        write
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut stream = read
        .reunite(sender.await.expect("sender"))
        .expect("one stream");
    let seen = read_to_end_within(&mut stream, std::time::Duration::from_secs(10))
        .await
        .expect("the connection was not ended");
    let answered = String::from_utf8_lossy(&seen)
        .matches("HTTP/1.1 200")
        .count();
    assert!(
        answered < REQUESTS,
        "all {answered} answers were written: the stall went unnoticed"
    );
}

/// Reads `count` flood messages (and whatever else arrives), at most `bytes_per_sec` when
/// given; returns the texts in arrival order, or why it stopped early.
async fn read_flood(
    mut client: Client,
    count: usize,
    bytes_per_sec: Option<f64>,
) -> Result<Vec<String>, String> {
    let started = std::time::Instant::now();
    let (mut texts, mut flood, mut bytes) = (Vec::new(), 0, 0usize);
    while flood < count {
        match client.next_within(std::time::Duration::from_secs(20)).await {
            Some(Seen::Text(text)) => {
                bytes += text.len();
                flood += usize::from(text.ends_with("-- FROM flooder"));
                texts.push(text);
            }
            other => return Err(format!("after {flood} flood messages: {other:?}")),
        }
        if let Some(rate) = bytes_per_sec {
            let due = std::time::Duration::from_secs_f64(bytes as f64 / rate);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(ahead).await;
            }
        }
    }
    Ok(texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_a_flooding_sender_is_slowed_down_and_its_readers_keep_everything() {
    const FLOOD: usize = 100_000;
    let server = start(chat_server::Config {
        inbound: chat_server::InboundBudget {
            messages_per_sec: 10_000.0,
            bytes_per_sec: 1024.0 * 1024.0,
            burst: std::time::Duration::from_millis(100),
        },
        ..chat_server::Config::default()
    })
    .await;
    let addr = server.local_addr();
    let mut flooder = login(addr, "flooder").await;
    let mut alice = login(addr, "alice").await;
    let slow = login(addr, "slow").await;
    let fast = login(addr, "fast").await;
    wait_online(&server, 4).await;
    // A reader at 1 MB/s: far below what an unthrottled flood delivers (8 MB in well
    // under a second, past the socket buffers and the 4 MiB queue), above what the budget
    // lets through (10,000 messages/s of 80 bytes).
    let slow = tokio::spawn(read_flood(slow, FLOOD, Some(1_000_000.0)));
    let fast = tokio::spawn(read_flood(fast, FLOOD, None));
    let sender = tokio::spawn(async move {
        for i in 0..FLOOD {
            flooder.send(&format!("{i:05} {}", "f".repeat(58))).await;
        }
        flooder
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    alice.send("hello from alice").await;
    // Alice reads too (a user that never reads is a slow consumer whoever floods).
    let alice = tokio::spawn(read_flood(alice, FLOOD, None));
    let _flooder = sender.await.expect("the flood was sent");
    for (reader, texts) in [("slow", slow.await), ("fast", fast.await)] {
        let texts = texts
            .expect("reader task")
            .unwrap_or_else(|why| panic!("{reader} reader lost its session: {why}"));
        let flood: Vec<&String> = texts
            .iter()
            .filter(|t| t.ends_with("-- FROM flooder"))
            .collect();
        for (i, text) in flood.iter().enumerate() {
            assert!(
                text.starts_with(&format!("{i:05} ")),
                "{reader}: message {i} out of order"
            );
        }
        let position = texts
            .iter()
            .position(|t| t == "hello from alice -- FROM alice")
            .unwrap_or_else(|| panic!("{reader} never got alice's message"));
        eprintln!(
            "{reader} reader: alice's message arrived after {position} of {FLOOD} flood messages"
        );
        assert!(
            position < FLOOD / 2,
            "{reader}: alice waited behind the flood ({position})"
        );
    }
    alice
        .await
        .expect("reader task")
        .expect("alice kept her session");
    let throttled = metric(addr, "chat_throttled_total").await;
    assert!(throttled > 0, "the flooder was never slowed down");
    assert_eq!(
        metric(addr, "chat_slow_consumer_disconnects_total").await,
        0
    );
}
