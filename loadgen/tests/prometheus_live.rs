//! A real Prometheus (Debian's `prometheus`, the package that also brings `promtool`)
//! fed by everything loadgen and chat-server offer it, and read back through its HTTP API:
//!
//! - it scrapes a chat-server cluster node (`loadgen serve --bus`, over a real
//!   `redis-server`, so that the bus metrics exist) and a `loadgen run --metrics`, every
//!   second, with the configuration's jobs as in `deploy/prometheus/prometheus.yml`;
//! - it receives a second run's `--remote-write` pushes (`--web.enable-remote-write-receiver`);
//! - the pushed run's final `loadgen_sent_total`, `loadgen_delivered_total`,
//!   `loadgen_lost_total` and latency count equal its `summary.json` (and earlier pushed
//!   samples were smaller, so the comparison sees a difference);
//! - every PromQL expression of both Grafana dashboards (`deploy/grafana/`) returns data,
//!   the loadgen dashboard's for the scraped run and the pushed one alike, and the
//!   dashboards' variables list them; a run that does not exist returns nothing.
//!
//! Prometheus missing is a failure that names the command that installs it, never a skip.

mod launch;
mod scratch;

use std::io::{BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use launch::{loadgen, summary_in, total, LOADGEN};
use redis_process::RedisProcess;
use scratch::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// How to install Prometheus when it is missing.
const INSTALL: &str = "apt-get install -y prometheus (Debian/Ubuntu; scripts/test.sh installs it)";

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chat-server cluster node: `loadgen serve --bus URL` (chat-server embedded).
fn cluster_node(bus: &str) -> (Killed, SocketAddr) {
    let mut child = Command::new(LOADGEN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bus",
            bus,
            "--id",
            "n0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("loadgen serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let node = Killed(child);
    let mut line = String::new();
    StdBufReader::new(stdout)
        .read_line(&mut line)
        .expect("the node prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the node did not start: {line:?}"))
        .parse()
        .expect("an address");
    (node, addr)
}

/// Prometheus on a free loopback port, storing in `dir`, with `config`; returns once it
/// is ready.
async fn prometheus(dir: &Path, config: &str) -> (Killed, SocketAddr) {
    match Command::new("prometheus").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "prometheus --version failed ({}); reinstall it: {INSTALL}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("cannot run prometheus ({error}): install it: {INSTALL}"),
    }
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config", config_file.to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): install it: {INSTALL}"));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): {INSTALL}"));
    let mut prometheus = Killed(child);
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = get(address, "/-/ready").await {
            break;
        }
        let exited = prometheus.0.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > Duration::from_secs(30) {
            panic!(
                "prometheus on {address} is not ready ({exited:?}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (prometheus, address)
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked): status and body.
async fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
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

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `data.result` of an instant query through `/api/v1/query`.
async fn query(prometheus: SocketAddr, promql: &str) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", encode(promql));
    let (status, body) = get(prometheus, &path).await.expect("prometheus answers");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {status} {body}"));
    assert_eq!(json["status"], "success", "{promql}: {body}");
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{promql}: no result in {body}"))
}

/// The one value of an instant query that must return exactly one series.
async fn single_value(prometheus: SocketAddr, promql: &str) -> f64 {
    let result = query(prometheus, promql).await;
    assert_eq!(result.len(), 1, "{promql}: {result:?}");
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{promql}: {result:?}"))
}

/// Every PromQL expression of a Grafana dashboard, its variables given: `$instance` any
/// instance, `$run` the run named, Grafana's own intervals one minute.
fn dashboard_expressions(file: &str, run: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            expressions.push(
                expr.replace("$__rate_interval", "1m")
                    .replace("$__interval", "1m")
                    .replace("$__range", "5m")
                    .replace("$instance", ".*")
                    .replace("$run", run),
            );
        }
    }
    assert!(!expressions.is_empty(), "{file} has expressions");
    expressions
}

/// The expressions of `expressions` that still return nothing after `within` of asking
/// again (new scrapes come every second).
async fn without_data(
    prometheus: SocketAddr,
    expressions: &[String],
    within: Duration,
) -> Vec<String> {
    let started = Instant::now();
    let mut empty = expressions.to_vec();
    loop {
        let mut still = Vec::new();
        for expr in &empty {
            if query(prometheus, expr).await.is_empty() {
                still.push(expr.clone());
            }
        }
        empty = still;
        if empty.is_empty() || started.elapsed() > within {
            return empty;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Broadcast for a few seconds, to a server or the embedded one.
fn scenario(name: &str, duration: &str) -> String {
    format!(
        "name = \"{name}\"\n\
         [users]\ncount = 8\nname_prefix = \"{name}-\"\nconnect_over = \"100ms\"\n\
         [[phase]]\nduration = \"{duration}\"\nrate = 20\nsenders = 4\nrelogin_rate = 1\n\
         [thresholds]\nmin_delivery_ratio = 1.0\nmax_eviction_failures = 0\n"
    )
}

/// `<scenario>-<UTC start>`, the `run` label of a run, from its summary.json.
fn run_label(summary: &serde_json::Value) -> String {
    let started = summary["started_at"].as_str().expect("started_at");
    format!(
        "{}-{}",
        summary["scenario_name"].as_str().expect("scenario_name"),
        started.replace(['-', ':'], "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gets_every_dashboard_figure_by_scrape_and_by_remote_write() {
    let dir = TempDir::new("prometheus-live");
    let redis = RedisProcess::start().unwrap_or_else(|e| panic!("{e}"));
    let (_node, node) = cluster_node(&redis.url());

    // The scraped run: long enough to outlast everything below; it is stopped at the end.
    let scraped_file = dir.path().join("scraped.toml");
    std::fs::write(&scraped_file, scenario("scraped", "90s")).unwrap();
    let mut scraped = tokio::process::Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "off")
        .args(["run", scraped_file.to_str().unwrap(), "--quiet"])
        .args(["--target", &format!("ws://{node}/")])
        .args(["--metrics", "127.0.0.1:0"])
        .args(["--out", dir.path().join("scraped").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("loadgen starts");
    let mut stderr = BufReader::new(scraped.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("the metrics address is said in time")
        .expect("stderr reads")
        .unwrap_or_default();
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: chat-server\n    static_configs:\n      - targets: [\"{node}\"]\n\
         \x20 - job_name: loadgen\n    static_configs:\n      - targets: [\"{metrics}\"]\n"
    );
    let (_prometheus, prometheus) = prometheus(dir.path(), &config).await;

    // The pushed run, on its own embedded server, a push every second.
    let pushed_file = dir.path().join("pushed.toml");
    std::fs::write(&pushed_file, scenario("pushed", "4s")).unwrap();
    let pushed_out = dir.path().join("pushed");
    let url = format!("http://{prometheus}/api/v1/write");
    let output = loadgen(&[
        "run",
        pushed_file.to_str().unwrap(),
        "--quiet",
        "--out",
        pushed_out.to_str().unwrap(),
        "--remote-write",
        &url,
        "--remote-write-every",
        "1s",
    ])
    .await;
    // Its verdict is its own (a loaded machine may fail a threshold); the point here is
    // the figures, so it need only have run to its end.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "the pushed run ran: {:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr
        .lines()
        .find(|l| l.starts_with("loadgen: remote write to "))
        .unwrap_or_else(|| panic!("no remote-write line:\n{stderr}"));
    let pushed_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pushed_out.join("remote_write.json")).expect("remote_write.json"),
    )
    .expect("remote_write.json parses");
    let pushes = pushed_json["pushes"].as_u64().unwrap_or(0);
    assert!(pushes >= 3, "{pushed_json}");
    assert_eq!(
        pushed_json["delivered"].as_u64(),
        Some(pushes),
        "{pushed_json}"
    );
    assert!(
        said.starts_with(&format!(
            "loadgen: remote write to {url}: {pushes} pushes, {pushes} delivered ("
        )),
        "{said}"
    );

    // The pushed run's final figures are summary.json's.
    let summary = summary_in(&pushed_out);
    let run = run_label(&summary);
    for (metric, expected) in [
        ("loadgen_sent_total", total(&summary, "sent")),
        ("loadgen_delivered_total", total(&summary, "delivered")),
        ("loadgen_lost_total", total(&summary, "lost")),
        (
            "loadgen_latency_seconds_count",
            summary["latency_us"]["count"]
                .as_u64()
                .expect("latency count"),
        ),
    ] {
        let value = single_value(prometheus, &format!("{metric}{{run=\"{run}\"}}")).await;
        eprintln!("{metric}{{run=\"{run}\"}}: Prometheus {value}, summary.json {expected}");
        assert_eq!(value, expected as f64, "{metric} of {run}");
    }
    assert!(total(&summary, "sent") > 0 && total(&summary, "delivered") > 0);
    // The comparison can fail: the pushes before the last one had smaller figures.
    let history = query(
        prometheus,
        &format!("loadgen_delivered_total{{run=\"{run}\"}}[5m]"),
    )
    .await;
    let values: Vec<f64> = history[0]["values"]
        .as_array()
        .expect("a range of samples")
        .iter()
        .filter_map(|v| v[1].as_str()?.parse().ok())
        .collect();
    eprintln!("loadgen_delivered_total of {run}, push by push: {values:?}");
    assert!(values.len() >= 3, "{values:?}");
    assert_eq!(
        values.last().copied(),
        Some(total(&summary, "delivered") as f64)
    );
    assert!(values[0] < values[values.len() - 1], "{values:?}");

    // The dashboards' variables list what they pick from.
    let scraped_run = query(prometheus, "loadgen_sent_total{scenario=\"scraped\"}").await;
    assert_eq!(scraped_run.len(), 1, "{scraped_run:?}");
    let scraped_run = scraped_run[0]["metric"]["run"]
        .as_str()
        .expect("a run label")
        .to_string();
    let runs: Vec<String> = query(prometheus, "count by (run) (loadgen_sent_total)")
        .await
        .iter()
        .filter_map(|r| r["metric"]["run"].as_str().map(str::to_string))
        .collect();
    assert!(
        runs.contains(&run) && runs.contains(&scraped_run),
        "{runs:?}"
    );
    let instances = query(prometheus, "count by (instance) (chat_sessions_online)").await;
    assert_eq!(instances[0]["metric"]["instance"], node.to_string());

    // Every dashboard expression returns data: chat-server's from the scraped node, the
    // loadgen run's from the scraped run and from the pushed one.
    let mut expressions = dashboard_expressions("chat-server.json", ".*");
    for label in [&scraped_run, &run] {
        expressions.extend(dashboard_expressions("loadgen-run.json", label));
    }
    let empty = without_data(prometheus, &expressions, Duration::from_secs(20)).await;
    assert!(
        empty.is_empty(),
        "dashboard expressions without data:\n{}",
        empty.join("\n")
    );
    eprintln!(
        "{} dashboard expressions returned data (runs {scraped_run} and {run})",
        expressions.len()
    );
    // The check can fail: a run that does not exist has no data.
    let nothing = dashboard_expressions("loadgen-run.json", "no-such-run");
    let empty = without_data(prometheus, &nothing, Duration::ZERO).await;
    assert_eq!(empty.len(), nothing.len(), "{empty:?}");
    drop(scraped);
}
