//! `report.html` of `loadgen run` and its live view (`--dashboard`), end to end: the real
//! binary against real servers on loopback. The page of a clean run passes with every
//! chart; a server with a broken registry gives a page that fails and names the
//! threshold; the live view answers the page and the Prometheus figures (`--dashboard`,
//! `--metrics`) while the run lasts and its port is closed when the run ends; a dashboard
//! on a non-loopback address is refused unless asked for.
//! (The merged run's page is checked in `segments.rs`, the gate's in `gate.rs`, the
//! capacity report's in `capacity.rs`.)

mod launch;
mod page_check;
mod scratch;

use std::process::Stdio;
use std::time::Duration;

use chat_server::Fault;
use launch::{loadgen, server, LOADGEN};
use scratch::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The charts of a run's page, in page order.
const RUN_CHARTS: [&str; 5] = [
    "latency-over-time",
    "throughput-over-time",
    "users-over-time",
    "errors-over-time",
    "latency-spectrum",
];

/// A finished run's page also has loadgen's and the server's memory over time (a live
/// view has no samples yet).
const FINISHED_RUN_CHARTS: [&str; 6] = [
    "latency-over-time",
    "throughput-over-time",
    "users-over-time",
    "errors-over-time",
    "latency-spectrum",
    "memory-over-time",
];

/// Relogins and broadcast with a warm-up, so every chart has something to show.
const SCENARIO: &str = r#"
name = "pages"
warmup = "1s"

[users]
count = 16
connect_over = "100ms"

[[phase]]
name = "broadcast"
duration = "1s"
rate = 30
senders = 6

[[phase]]
name = "storm"
duration = "2s"
rate = 30
senders = 6
relogin_rate = 4

[thresholds]
p99 = "2s"
min_delivery_ratio = 1.0
max_eviction_failures = 0
"#;

/// Runs SCENARIO against a server with `fault`; returns the exit code and report.html.
async fn run_page(tag: &str, fault: Option<Fault>) -> (i32, String) {
    let dir = TempDir::new(tag);
    let file = dir.path().join("pages.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out = dir.path().join("report");
    let server = server(fault).await;
    let target = format!("ws://{}/", server.local_addr());
    let output = loadgen(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--target",
        &target,
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html written");
    (output.status.code().unwrap_or(-1), page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_writes_a_passing_page_with_every_chart_and_nothing_from_outside() {
    let (code, page) = run_page("clean", None).await;
    assert_eq!(code, 0);
    page_check::assert_self_contained(&page);
    let doc = page_check::parse(&page);
    assert_eq!(page_check::chart_ids(&doc), FINISHED_RUN_CHARTS);
    let (class, text) = page_check::headline(&doc);
    assert_eq!(class, "headline pass");
    assert!(text.starts_with("PASS ("), "{text}");
    // Phases and the warm-up are marked on the charts over time.
    for text in ["broadcast", "storm", "warm-up (not judged)"] {
        assert!(page.contains(text), "{text}");
    }
    let whole = page_check::text_of(doc.root_element());
    assert!(whole.contains("pages ("), "the setup names the scenario");
    assert!(
        whole.contains("logical CPUs"),
        "the setup names the machine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_eviction_gives_a_failing_page_that_names_the_threshold() {
    let (code, page) = run_page("zombies", Some(Fault::DeleteByName)).await;
    assert_eq!(code, 1);
    let doc = page_check::parse(&page);
    let (class, text) = page_check::headline(&doc);
    assert_eq!(class, "headline fail");
    assert!(text.contains("max_eviction_failures"), "{text}");
    let failed = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("text fail"))
        .count();
    assert!(failed >= 1, "the thresholds table marks the failure");
}

/// GET / of a local HTTP server: the status code and the body.
async fn get(address: &str) -> std::io::Result<(u16, String)> {
    get_path(address, "/").await
}

async fn get_path(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_answers_while_the_run_lasts_and_closes_with_it() {
    live_view("--dashboard", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_of_a_run_split_over_workers_answers_and_closes_too() {
    live_view("--dashboard", &["--workers", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_serves_prometheus_figures_while_the_run_lasts() {
    live_view("--metrics", &[]).await;
}

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{labels} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&head))
        .and_then(|value| value.parse().ok())
}

/// A run with `flag` (`--dashboard` or `--metrics`) and `extra` arguments: its page and
/// its figures for Prometheus answer while it runs, and its port is closed once it ended.
async fn live_view(flag: &str, extra: &[&str]) {
    let dir = TempDir::new("live");
    let file = dir.path().join("live.toml");
    // Long enough to look at twice; short enough for CI.
    std::fs::write(
        &file,
        SCENARIO.replace("duration = \"2s\"", "duration = \"5s\""),
    )
    .unwrap();
    let server = server(None).await;
    let target = format!("ws://{}/", server.local_addr());
    let out = dir.path().join("report");
    let mut child = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args([
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--target",
            &target,
        ])
        .args([flag, "127.0.0.1:0", "--out", out.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("loadgen starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("the address is said in time")
        .unwrap()
        .unwrap_or_default();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep reading stderr so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    // The page answers while the run lasts; once an interval closed it has figures.
    let mut running = None;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, body) = get(&address).await.expect("the live view answers");
        assert_eq!(status, 200);
        if body.contains("Running: ") && body.contains("s of 6 s") {
            running = Some(body);
            break;
        }
    }
    let page = running.expect("the live page shows the run in progress");
    page_check::assert_self_contained(&page);
    let doc = page_check::parse(&page);
    assert_eq!(page_check::chart_ids(&doc), RUN_CHARTS);
    let refresh = doc
        .descendants()
        .find(|n| n.attribute("http-equiv") == Some("refresh"))
        .and_then(|n| n.attribute("content"));
    assert_eq!(refresh, Some("2"), "the live page reloads itself");

    // The same figures for Prometheus, labelled with the run and the scenario.
    let (status, metrics) = get_path(&address, "/metrics")
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    let labels = metrics
        .lines()
        .find_map(|line| line.strip_prefix("loadgen_sent_total"))
        .and_then(|rest| rest.split_once(' '))
        .map(|(labels, _)| labels.to_string())
        .unwrap_or_else(|| panic!("no loadgen_sent_total in {metrics}"));
    assert!(labels.starts_with("{run=\"pages-20"), "{labels}");
    assert!(labels.ends_with(",scenario=\"pages\"}"), "{labels}");
    let sent = sample(&metrics, "loadgen_sent_total", &labels).unwrap_or_default();
    assert!(sent > 0.0, "{metrics}");
    // 16 users and the relogins' probe user of each worker, some of them relogging.
    let online = sample(&metrics, "loadgen_users_online", &labels).unwrap_or_default();
    assert!((10.0..=18.0).contains(&online), "{online} online");
    let inner = &labels[1..labels.len() - 1];
    let all = sample(
        &metrics,
        "loadgen_latency_seconds_bucket",
        &format!("{{{inner},le=\"+Inf\"}}"),
    );
    // Buckets only grow, up to +Inf (empty while the warm-up lasts: it is not judged).
    let buckets: Vec<f64> = metrics
        .lines()
        .filter(|line| line.starts_with("loadgen_latency_seconds_bucket"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(buckets.len() > 5, "{metrics}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(all, buckets.last().copied(), "{metrics}");
    assert!(metrics.contains("# TYPE loadgen_latency_seconds histogram"));

    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the run ends")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let closed = get(&address).await;
    assert!(
        closed.is_err(),
        "the port is closed after the run: {closed:?}"
    );
    assert!(out.join("report.html").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let final_sent = summary["totals"]["sent"].as_f64().unwrap_or_default();
    assert!(final_sent >= sent, "scraped {sent}, final {final_sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_other_machines_could_reach_must_be_asked_for() {
    let output = loadgen(&[
        "run",
        "../scenarios/smoke.toml",
        "--quiet",
        "--dashboard",
        "0.0.0.0:0",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--dashboard-public"), "{stderr}");
    let output = loadgen(&[
        "run",
        "../scenarios/smoke.toml",
        "--quiet",
        "--metrics",
        "0.0.0.0:0",
    ])
    .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "--metrics is loopback only too"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--metrics: refusing"), "{stderr}");
    let output = loadgen(&["run", "../scenarios/smoke.toml", "--dashboard-public"]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "--dashboard-public alone is refused"
    );
}
