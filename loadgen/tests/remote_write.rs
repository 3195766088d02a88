//! `loadgen run --remote-write URL` when the receiver is no good, end to end: the real
//! binary and its embedded chat-server. A receiver that nobody runs (a free port) or one
//! that answers every push with 500 changes neither the run's verdict nor its exit code —
//! a passing run still exits 0, a failing one 1 — and the failed pushes are counted on
//! stderr and in `remote_write.json`; the 500s are tried again. A URL loadgen cannot push
//! to, or a push interval it will not keep, is a usage error (exit 2) that says why.
//! (A real Prometheus receiving the pushes: `prometheus_live.rs`.)

mod launch;
mod scratch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use launch::{loadgen, summary_in};
use scratch::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A few seconds of broadcast on the embedded server.
const SCENARIO: &str = r#"
name = "pushing"

[users]
count = 6
connect_over = "100ms"

[[phase]]
duration = "3s"
rate = 10
senders = 2

[thresholds]
min_delivery_ratio = 1.0
"#;

/// The same run, judged by a limit no server meets: it fails.
fn failing_scenario() -> String {
    SCENARIO.replace("[thresholds]\n", "[thresholds]\np99 = \"1us\"\n")
}

/// A loopback port nobody listens on.
async fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// A receiver that reads each request whole and answers `500 Internal Server Error`;
/// returns its port and the count of requests it answered.
async fn failing_receiver() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    bytes.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if bytes.len() >= end + 4 + length {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 17\r\n\
                          connection: close\r\n\r\nstorage is broken",
                    )
                    .await;
            });
        }
    });
    (port, answered)
}

/// What a run with `--remote-write URL` (a push every second) came to: its exit code,
/// its stderr's remote-write line, its summary.json and its remote_write.json.
async fn run_pushing(
    tag: &str,
    scenario: &str,
    url: &str,
) -> (i32, String, serde_json::Value, serde_json::Value) {
    let dir = TempDir::new(tag);
    let file = dir.path().join("pushing.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("report");
    let started = std::time::Instant::now();
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--remote-write",
        url,
        "--remote-write-every",
        "1s",
    ])
    .await;
    eprintln!("the run took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("loadgen: remote write to "))
        .unwrap_or_else(|| panic!("no remote-write line on stderr:\n{stderr}"))
        .to_string();
    let pushed = std::fs::read_to_string(out.join("remote_write.json"))
        .map(|text| serde_json::from_str(&text).expect("remote_write.json parses"))
        .expect("remote_write.json written");
    (
        output.status.code().unwrap_or(-1),
        line,
        summary_in(&out),
        pushed,
    )
}

/// Every push failed, and the stderr line and remote_write.json say the same counts.
fn assert_every_push_failed(line: &str, pushed: &serde_json::Value, url: &str, why: &str) {
    let count = |field: &str| {
        pushed[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {pushed}"))
    };
    let (pushes, failed) = (count("pushes"), count("failed"));
    assert!(
        pushes >= 2,
        "pushes while the run lasted, and the final one: {pushed}"
    );
    assert_eq!(failed, pushes, "{pushed}");
    assert_eq!(count("delivered"), 0);
    assert_eq!(count("samples_sent"), 0);
    let not_delivered = count("samples_not_delivered");
    assert!(
        not_delivered >= pushes * 20,
        "each push holds every series: {pushed}"
    );
    assert_eq!(pushed["url"], url);
    let error = pushed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "{error}");
    assert_eq!(
        line,
        format!(
            "loadgen: remote write to {url}: {failed} of {pushes} pushes failed ({error}); \
             {not_delivered} samples not delivered"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_nobody_runs_leaves_a_passing_run_passing_and_is_reported() {
    let url = format!("http://127.0.0.1:{}/api/v1/write", dead_port().await);
    let (code, line, summary, pushed) = run_pushing("dead", SCENARIO, &url).await;
    assert_eq!(code, 0, "the run's own verdict: PASS");
    assert_eq!(summary["passed"], true, "{summary}");
    assert_eq!(summary["complete"], true);
    assert_every_push_failed(&line, &pushed, &url, "cannot connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_is_retried_and_a_failing_run_still_exits_1() {
    let (port, answered) = failing_receiver().await;
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let (code, line, summary, pushed) = run_pushing("500", &failing_scenario(), &url).await;
    assert_eq!(code, 1, "the run's own verdict: FAIL (p99)");
    assert_eq!(summary["passed"], false, "{summary}");
    assert_every_push_failed(
        &line,
        &pushed,
        &url,
        "the receiver answered 500 Internal Server Error: storage is broken",
    );
    let requests = pushed["requests"].as_u64().unwrap_or(0);
    assert_eq!(requests, answered.load(Ordering::SeqCst), "{pushed}");
    assert!(
        requests > pushed["pushes"].as_u64().unwrap_or(0),
        "a 500 is tried again: {pushed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_or_interval_loadgen_cannot_push_with_is_a_usage_error() {
    let dir = TempDir::new("usage");
    let file = dir.path().join("pushing.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let file = file.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--remote-write", "https://prometheus.example/api/v1/write"],
            "https:// is not supported",
        ),
        (
            vec!["--remote-write", "127.0.0.1:9090/api/v1/write"],
            "not an http:// URL",
        ),
        (
            vec![
                "--remote-write",
                "http://127.0.0.1:9/api/v1/write",
                "--remote-write-every",
                "10ms",
            ],
            "--remote-write-every 10ms: at least 100ms",
        ),
        (vec!["--remote-write-every", "1s"], "--remote-write <URL>"),
        (
            vec![
                "--remote-write",
                "http://127.0.0.1:9/api/v1/write",
                "--segment",
                "0/2",
                "--start-at",
                "+30s",
            ],
            // One segment may push (its series labelled segment="0/2"), but a segment
            // needs the server every segment loads.
            "--segment needs a target",
        ),
    ] {
        let output = loadgen(&[&["run", file][..], &args].concat()).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
