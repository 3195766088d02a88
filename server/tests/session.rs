//! Session rules S1–S3 and S7 of docs/protocol.md: logging in, refused logins, ending a session.
//! (Relogin eviction, S4–S6, is in `eviction.rs`.)

mod common;
use common::*;

use std::time::Duration;

use chat_server::Config;

#[tokio::test]
async fn s1_percent_encoded_utf8_name_logs_in_as_that_name() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut zhang = login_raw(addr, "%E5%BC%A0%E4%B8%89").await.unwrap();
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    zhang.send("你好").await;
    assert_eq!(bob.text().await, "你好 -- FROM 张三");
}

#[tokio::test]
async fn s1_raw_utf8_bytes_in_the_query_are_accepted() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (status, body) = http_get(addr, "/?user=李四".as_bytes(), true).await;
    assert_eq!(status, 101, "raw UTF-8 login refused: {body:?}");

    let mut zhang = login_target(addr, "/?user=张三".as_bytes()).await;
    let mut bob = login(addr, "bob").await;
    wait_online(&server, 2).await;
    zhang.send("hi").await;
    assert_eq!(bob.text().await, "hi -- FROM 张三");
}

#[tokio::test]
async fn s1_any_path_and_other_query_parameters_are_accepted() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login_target(addr, b"/some/chat/room?lang=en&user=ann&x=1").await;
    let mut bob = login_target(addr, b"/ws?user=bob").await;
    wait_online(&server, 2).await;
    ann.send("hi").await;
    assert_eq!(bob.text().await, "hi -- FROM ann");
}

/// Each refused login: (request-target, metric reason).
const REFUSED: &[(&[u8], &str)] = &[
    (b"/", "missing_user"),
    (b"/?name=ann", "missing_user"),
    (b"/?user=", "empty_user"),
    (b"/?user", "empty_user"),
    (b"/?user=a%0Ab", "control_character"),
    (b"/?user=a%7F", "control_character"),
    (b"/?user=%FF", "invalid_utf8"),
    (b"/?user=a%E5%BC", "invalid_utf8"),
];

fn assert_one_line_reason(target: &[u8], status: u16, body: &str) {
    let target = String::from_utf8_lossy(target);
    assert_eq!(status, 400, "{target}: expected 400, body {body:?}");
    let line = body.strip_suffix('\n').unwrap_or(body);
    assert!(
        !line.trim().is_empty() && !line.contains('\n'),
        "{target}: expected a one-line reason, got {body:?}"
    );
}

#[tokio::test]
async fn s2_s3_bad_names_get_400_with_a_one_line_reason_and_no_session() {
    let server = start_default().await;
    let addr = server.local_addr();
    let too_long = format!("/?user={}", "a".repeat(65));
    let too_long_utf8 = format!("/?user={}", encode(&format!("{}é", "张".repeat(21))));
    let mut cases: Vec<(&[u8], &str)> = REFUSED.to_vec();
    cases.push((too_long.as_bytes(), "name_too_long"));
    cases.push((too_long_utf8.as_bytes(), "name_too_long"));

    for &(target, _) in &cases {
        // Both through the raw HTTP helper and a real upgrade attempt.
        let (status, body) = http_get(addr, target, true).await;
        assert_one_line_reason(target, status, &body);
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        match upgrade_raw(stream, target).await {
            Ok(_) => panic!("{}: upgraded", String::from_utf8_lossy(target)),
            Err((status, body)) => assert_one_line_reason(target, status, &body),
        }
    }
    assert_eq!(server.online(), 0, "a refused login opened a session");
    assert_eq!(metric(addr, "chat_logins_total").await, 0);
    assert_eq!(metric(addr, "chat_sessions_online").await, 0);
    for reason in [
        "missing_user",
        "empty_user",
        "name_too_long",
        "control_character",
        "invalid_utf8",
    ] {
        let want = 2 * cases.iter().filter(|(_, r)| *r == reason).count() as u64;
        let got = metric_labeled(
            addr,
            "chat_refused_handshakes_total",
            &format!("reason=\"{reason}\""),
        )
        .await;
        assert_eq!(
            got, want,
            "chat_refused_handshakes_total{{reason={reason}}}"
        );
    }
}

#[tokio::test]
async fn s3_a_name_of_exactly_the_limit_is_accepted() {
    let server = start_default().await;
    let addr = server.local_addr();
    let ascii = "a".repeat(64);
    let utf8 = format!("{}b", "张".repeat(21)); // 63 + 1 bytes
    assert_eq!(utf8.len(), 64);
    let mut long_ascii = login(addr, &ascii).await;
    let mut long_utf8 = login(addr, &utf8).await;
    wait_online(&server, 2).await;
    long_ascii.send("x").await;
    assert_eq!(long_utf8.text().await, format!("x -- FROM {ascii}"));
    long_utf8.send("y").await;
    assert_eq!(long_ascii.text().await, format!("y -- FROM {utf8}"));
}

#[tokio::test]
async fn s3_the_name_limit_is_configurable() {
    let server = start(Config {
        max_name: 4,
        ..Config::default()
    })
    .await;
    let addr = server.local_addr();
    let (status, body) = http_get(addr, b"/?user=abcde", true).await;
    assert_one_line_reason(b"/?user=abcde", status, &body);
    let (status, _) = http_get(addr, b"/?user=abcd", true).await;
    assert_eq!(status, 101);
}

#[tokio::test]
async fn s7_client_close_is_answered_and_the_user_goes_offline() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login(addr, "ann").await;
    let mut bob = login(addr, "bob").await;
    let mut cat = login(addr, "cat").await;
    wait_online(&server, 3).await;
    ann.send("before").await;
    assert_eq!(bob.text().await, "before -- FROM ann");
    assert_eq!(cat.text().await, "before -- FROM ann");

    cat.send_frame(fastwebsockets::Frame::close(1000, b"bye"))
        .await;
    match cat.next().await {
        Seen::Close(Some(1000), _) => {}
        other => panic!("expected the server to answer Close 1000, got {other:?}"),
    }
    wait_online(&server, 2).await;

    ann.send("after").await;
    assert_eq!(bob.text().await, "after -- FROM ann");
    // Nothing more reaches cat: at most the end of the TCP connection.
    match cat.next_within(Duration::from_millis(300)).await {
        None | Some(Seen::Dropped) => {}
        Some(other) => panic!("a closed session received {other:?}"),
    }
    assert_eq!(wait_metric(addr, "chat_deliveries_out_total", 3).await, 3);
}

#[tokio::test]
async fn s7_empty_client_close_is_answered() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login(addr, "ann").await;
    wait_online(&server, 1).await;
    ann.send_frame(frame(true, fastwebsockets::OpCode::Close, b""))
        .await;
    match ann.next().await {
        Seen::Close(..) => {}
        other => panic!("expected a Close answer, got {other:?}"),
    }
    wait_online(&server, 0).await;
}

#[tokio::test]
async fn s7_tcp_drop_takes_the_user_offline() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut ann = login(addr, "ann").await;
    let bob = login(addr, "bob").await;
    let mut cat = login(addr, "cat").await;
    wait_online(&server, 3).await;
    drop(bob);
    wait_online(&server, 2).await;
    ann.send("still here").await;
    assert_eq!(cat.text().await, "still here -- FROM ann");
    assert_eq!(wait_metric(addr, "chat_deliveries_out_total", 1).await, 1);
    assert_eq!(metric(addr, "chat_sessions_online").await, 2);
}

#[tokio::test]
async fn s3_format_characters_in_a_name_are_refused_with_400() {
    let server = start_default().await;
    let addr = server.local_addr();
    // "ann" + RIGHT-TO-LEFT OVERRIDE + "nna" shows as "annann" turned around; ZERO WIDTH
    // SPACE makes a second "bob" that looks like the first.
    for query in ["/?user=ann%E2%80%AEnna", "/?user=b%E2%80%8Bob"] {
        let (status, body) = http_get(addr, query.as_bytes(), true).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains("format character"), "{body}");
    }
    assert_eq!(
        metric_labeled(
            addr,
            "chat_refused_handshakes_total",
            "reason=\"format_character\""
        )
        .await,
        2
    );
    assert_eq!(server.online(), 0);
}
