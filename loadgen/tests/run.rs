//! End-to-end tests of `loadgen run`: the real binary against a real server on loopback —
//! the embedded child, or chat-server started here with a deliberate defect to prove that
//! each check can fail.

// Only `start` and `url` are used here.
#[allow(dead_code)]
#[path = "support/delay_proxy.rs"]
mod delay_proxy;
mod launch;
mod scratch;

use launch::{assert_clean, loadgen, server, summary_in, total};
use scratch::TempDir;

use chat_server::{Fault, ServerHandle};

/// A short relogin-and-broadcast scenario (no target: tests pass --target or none).
const SHORT: &str = r#"
[users]
count = 12
connect_over = "100ms"

[[phase]]
duration = "2s"
rate = 30
senders = 6
relogin_rate = 4

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

/// Runs `scenario` text, against `server` if given; returns (exit code, summary.json).
async fn run_scenario(
    tag: &str,
    scenario: &str,
    server: Option<&ServerHandle>,
) -> (i32, serde_json::Value, TempDir) {
    let dir = TempDir::new(tag);
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("report");
    let target = server.map(|s| format!("ws://{}/", s.local_addr()));
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(target) = &target {
        args.extend(["--target", target]);
    }
    let output = loadgen(&args).await;
    (output.status.code().unwrap_or(-1), summary_in(&out), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_against_the_embedded_server_is_clean() {
    let dir = TempDir::new("smoke");
    let out = dir.path().join("report");
    let output = loadgen(&[
        "run",
        "../scenarios/smoke.toml",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    for file in [
        "summary.json",
        "timeseries.csv",
        "latency.hlog",
        "latency.hgrm",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_clean(&summary);
    assert_eq!(summary["eviction_failures"].as_u64(), Some(0));
    assert!(total(&summary, "evictions_ok") > 0, "relogins were checked");
    assert!(total(&summary, "churn_leaves") > 0, "churn happened");
    assert!(total(&summary, "expected") > 1000);
    assert_eq!(summary["server"]["kind"], "embedded-child");
    // The embedded server's own count of deliveries, scraped by loadgen at the end.
    assert_eq!(
        summary["server_deliveries_out"].as_u64(),
        Some(total(&summary, "delivered"))
    );
    // Plain ws://: logins are timed by TCP connect and upgrade; no TLS.
    let connect = &summary["connect_us"];
    let logins = connect["tcp"]["count"].as_u64().unwrap();
    assert!(logins >= 20, "every user's login is timed: {connect}");
    assert_eq!(connect["upgrade"]["count"].as_u64(), Some(logins));
    assert_eq!(connect["tls"]["count"].as_u64(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PASS"), "summary table printed");
    // The machine was calibrated before and after (quick, as the tests ask for).
    let calibration = &summary["calibration"];
    assert_eq!(calibration["mode"], "quick", "{calibration}");
    for end in ["start", "end"] {
        assert!(calibration[end]["loopback_send_us"].as_f64().unwrap() > 0.0);
        assert!(calibration[end]["cpu_workload_ms"].as_f64().unwrap() > 0.0);
    }
    assert!(calibration["drifted"].is_boolean());
    assert!(stdout.contains("machine speed"), "{stdout}");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("Machine speed"));
    assert!(page.contains("loopback send"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_off_leaves_it_out_and_says_so() {
    let dir = TempDir::new("uncalibrated");
    let out = dir.path().join("report");
    let output = loadgen(&[
        "run",
        "../scenarios/smoke.toml",
        "--quiet",
        "--calibration",
        "off",
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["calibration"].is_null(),
        "{}",
        summary["calibration"]
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("not calibrated (--calibration off)"));
    let bad = loadgen(&["run", "../scenarios/smoke.toml", "--calibration", "fast"]).await;
    assert_eq!(bad.status.code(), Some(2));
    // `loadgen calibrate` measures on its own.
    let alone = loadgen(&["calibrate", "--calibration", "quick", "--json"]).await;
    assert_eq!(alone.status.code(), Some(0));
    let speed: serde_json::Value = serde_json::from_slice(&alone.stdout).expect("JSON");
    assert!(speed["loopback_send_us"].as_f64().unwrap() > 0.0, "{speed}");
    assert!(speed["cpu_workload_ms"].as_f64().unwrap() > 0.0, "{speed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_equals_the_servers_deliveries_out() {
    let server = server(None).await;
    let (code, summary, _dir) = run_scenario("metrics", SHORT, Some(&server)).await;
    assert_eq!(code, 0);
    let body = reqwest_metrics(server.local_addr()).await;
    let scraped: u64 = body
        .lines()
        .filter(|l| l.starts_with("chat_deliveries_out_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(scraped, total(&summary, "delivered"));
    assert!(scraped > 0);
}

async fn reqwest_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_deletes_by_name_shows_zombies_and_fails() {
    let server = server(Some(Fault::DeleteByName)).await;
    let (code, summary, _dir) = run_scenario("zombie", SHORT, Some(&server)).await;
    assert_eq!(code, 1, "a failed threshold exits 1");
    assert!(total(&summary, "evictions_zombie") > 0, "{summary}");
    let failed: Vec<&str> = summary["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["passed"] == false)
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"max_eviction_failures"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_drops_messages_shows_loss() {
    let server = server(Some(Fault::DropEvery(10))).await;
    let (code, summary, _dir) = run_scenario("loss", SHORT, Some(&server)).await;
    assert_eq!(code, 1);
    assert!(total(&summary, "lost") > 0, "{summary}");
    assert!(summary["delivery_ratio"].as_f64().unwrap() < 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_reorders_shows_ordering_errors() {
    let server = server(Some(Fault::SwapPairs)).await;
    let (code, summary, _dir) = run_scenario("order", SHORT, Some(&server)).await;
    assert_eq!(code, 1);
    assert!(total(&summary, "order_errors") > 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_hlog_reads_back_to_the_summary_count() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let server = server(None).await;
    let (code, summary, dir) = run_scenario("hlog", SHORT, Some(&server)).await;
    assert_eq!(code, 0);
    let log = std::fs::read(dir.path().join("report/latency.hlog")).unwrap();
    let mut deserializer = Deserializer::new();
    let mut count = 0u64;
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(interval) = entry.expect("log parses") {
            let bytes = base64_decode(interval.encoded_histogram());
            let histogram: hdrhistogram::Histogram<u64> = deserializer
                .deserialize(&mut bytes.as_slice())
                .expect("histogram decodes");
            count += histogram.len();
        }
    }
    assert_eq!(count, summary["latency_us"]["count"].as_u64().unwrap());
    assert!(count > 0);
}

fn base64_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        let Some(v) = alphabet.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn a_bad_scenario_exits_2_naming_the_field() {
    let (code, _, _dir) = run_scenario(
        "bad",
        "[users]\ncount = 0\n[[phase]]\nduration = \"1s\"\n",
        None,
    )
    .await;
    assert_eq!(code, 2);
    let dir = TempDir::new("bad2");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[users]\ncount = 3\ncolour = 1\n").unwrap();
    let output = loadgen(&["run", file.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("colour"),
        "{stderr}"
    );
    let output = loadgen(&["run", "no/such/file.toml"]).await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn an_unreachable_target_exits_3() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("unreachable");
    let file = dir.path().join("u.toml");
    std::fs::write(&file, SHORT).unwrap();
    let target = format!("ws://127.0.0.1:{port}/");
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--target",
        &target,
    ])
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.1"));
}

#[tokio::test]
async fn a_scenario_too_big_for_the_file_limit_is_refused() {
    let (code, _, _dir) = run_scenario(
        "huge",
        "[users]\ncount = 4000000\n[[phase]]\nduration = \"1s\"\n",
        None,
    )
    .await;
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_run_gives_an_incomplete_report_and_exit_3() {
    let server = server(None).await;
    let target = format!("ws://{}/", server.local_addr());
    let dir = TempDir::new("died");
    let file = dir.path().join("died.toml");
    std::fs::write(
        &file,
        "[users]\ncount = 5\n[[phase]]\nduration = \"30s\"\nrate = 5\n",
    )
    .unwrap();
    let out = dir.path().join("report");
    let run = tokio::spawn({
        let (file, out) = (file.clone(), out.clone());
        async move {
            loadgen(&[
                "run",
                file.to_str().unwrap(),
                "--quiet",
                "--target",
                &target,
                "--out",
                out.to_str().unwrap(),
            ])
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    server.shutdown().await;
    let output = run.await.unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "stopped within seconds, not after the 30 s phase"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["complete"], false);
    assert!(summary["incomplete_reason"]
        .as_str()
        .unwrap()
        .contains("stopped accepting"));
}

/// A relogin storm against `server` (directly, or through `via`), with `verify` settings.
async fn relogin_storm(
    tag: &str,
    server: &ServerHandle,
    via: Option<&str>,
    verify: &str,
) -> (i32, serde_json::Value) {
    let dir = TempDir::new(tag);
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[users]
count = 12
connect_over = "100ms"

[verify]
{verify}

[[phase]]
duration = "3s"
rate = 10
senders = 4
relogin_rate = 3

[thresholds]
min_delivery_ratio = 0.0
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("report");
    let target = format!("ws://{}/", server.local_addr());
    let target = via.unwrap_or(&target);
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--target",
        target,
    ])
    .await;
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_the_new_session_with_1013_is_named_not_a_zombie() {
    let server = server(Some(Fault::CloseReplacementWith1013)).await;
    let (_, summary) = relogin_storm("shed", &server, None, "").await;
    let closed = total(&summary, "evictions_survivor_closed");
    assert!(closed > 0, "{summary}");
    assert_eq!(total(&summary, "evictions_zombie"), 0, "{summary}");
    assert!(total(&summary, "unexpected_close_1013") > 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_deliveries_arrive_after_the_probe_deadline_gives_probe_late() {
    let server = server(None).await;
    // Every byte from the server arrives 600 ms late; probes must arrive within 300 ms.
    let proxy =
        delay_proxy::DelayProxy::start(server.local_addr(), std::time::Duration::from_millis(600));
    let verify = "probe_deadline = \"300ms\"\neviction_deadline = \"3s\"\ndeadline = \"3s\"";
    let (_, summary) = relogin_storm("late", &server, Some(&proxy.url()), verify).await;
    assert!(total(&summary, "evictions_probe_late") > 0, "{summary}");
    assert_eq!(total(&summary, "evictions_zombie"), 0, "{summary}");
    assert_eq!(total(&summary, "lost"), 0, "{summary}");
}

/// Relogins and churn from the first second for 12 s with a 1 s delivery deadline, so
/// most finished sessions are tallied while the run goes on (their ledgers let go).
const LONG_CHURN: &str = r#"
[users]
count = 40
connect_over = "200ms"

[[phase]]
duration = "12s"
rate = 40
senders = 8
relogin_rate = 3
churn_rate = 3
churn_offline = "300ms"

[verify]
deadline = "1s"

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_tallied_while_the_run_goes_on_count_loss_exactly_as_at_the_end() {
    // A clean server: every session tallied early or late expects what it got.
    let clean = server(None).await;
    let (code, summary, _dir) = run_scenario("fold-clean", LONG_CHURN, Some(&clean)).await;
    let early = summary["sessions_tallied_early"].as_u64().unwrap();
    assert!(
        early > 20,
        "relogins and churn were tallied as they aged: {early}"
    );
    assert_eq!(total(&summary, "lost"), 0, "{summary}");
    assert!(total(&summary, "expected") > 10_000, "{summary}");
    assert_eq!(code, 0, "{summary}");

    // Every tenth delivery of each session dropped: a tenth of what was expected is lost,
    // whether the session was tallied early or at the end.
    let dropping = server(Some(Fault::DropEvery(10))).await;
    let (code, summary, _dir) = run_scenario("fold-loss", LONG_CHURN, Some(&dropping)).await;
    assert_eq!(code, 1);
    assert!(summary["sessions_tallied_early"].as_u64().unwrap() > 20);
    let (lost, expected) = (total(&summary, "lost"), total(&summary, "expected"));
    let share = lost as f64 / expected as f64;
    assert!((0.07..0.13).contains(&share), "lost {lost} of {expected}");
}

/// Steady load with relogins and churn, memory sampled every second and judged after 8 s.
const SHORT_SOAK: &str = r#"
[users]
count = 300
connect_over = "300ms"

[[phase]]
duration = "25s"
rate = 20
senders = 10
relogin_rate = 5
churn_rate = 5
churn_offline = "1s"

[thresholds]
max_memory_growth = { settle = "8s", mb_per_hour = 150.0, sample_every = "1s" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_samples_both_processes_and_loadgen_holds_its_memory_flat() {
    let (_, summary, dir) = run_scenario("short-soak", SHORT_SOAK, None).await;
    // The samples: every second, both processes (the embedded server by its pid).
    let csv = std::fs::read_to_string(dir.path().join("report/resources.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.len() >= 25, "{csv}");
    assert!(
        rows.iter().all(|r| !r[1].is_empty() && !r[3].is_empty()),
        "loadgen's and the server's memory in every sample: {csv}"
    );
    let page = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(page.contains("memory-over-time"));
    // loadgen's growth after settling, against a limit a leak of one latency histogram per
    // second (about 1,000 MB/h, as before per-interval histograms went to the log) or one
    // probe id per user per probe would break many times over.
    let growth = summary["memory_growth"].as_array().unwrap();
    let loadgen = growth.iter().find(|g| g["process"] == "loadgen").unwrap();
    let rate = loadgen["mb_per_hour"].as_f64().unwrap();
    assert!(rate < 150.0, "loadgen grew {rate} MB/h: {loadgen}");
    let verdict = summary["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "max_memory_growth (loadgen)")
        .unwrap();
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert!(
        growth.iter().any(|g| g["process"] == "server"),
        "{growth:?}"
    );
    assert_eq!(total(&summary, "lost"), 0, "{summary}");
}
