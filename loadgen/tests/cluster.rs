//! `loadgen run` against a chat-server cluster (docs/protocol.md C1–C5): three nodes, each
//! a separate process (`loadgen serve --bus`, chat-server embedded), over a real
//! `redis-server` started here. The run must be clean across nodes; a Redis outage must
//! show in the report as a window (loss and refused logins while it lasts, nothing after,
//! never a duplicate); a node killed with SIGKILL must cost only its own users, reported as
//! disconnected, not as protocol failures.

mod scratch;

use scratch::TempDir;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_process::RedisProcess;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// One cluster node: `loadgen serve --bus URL`, killed when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    /// A node with one of chat-server's deliberate defects (`loadgen serve --fault`).
    fn with_fault(bus: &str, id: &str, fault: Option<&str>) -> Node {
        Node::with_args(bus, id, fault.map(|f| ["--fault", f]).as_slice())
    }

    /// A node with extra `loadgen serve` flags.
    fn with_args(bus: &str, id: &str, extra: &[[&str; 2]]) -> Node {
        let mut command = Command::new(LOADGEN);
        command.env("LOADGEN_CALIBRATION", "quick");
        command.args(["serve", "--listen", "127.0.0.1:0", "--bus", bus, "--id", id]);
        for pair in extra {
            command.args(pair);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("loadgen serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("node prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("node {id} did not start: {line:?}"))
            .parse()
            .expect("an address");
        Node { child, addr }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// A counter from the node's /metrics, summed over label sets.
    fn metric(&self, name: &str) -> u64 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).expect("node reachable");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn urls_of(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(Node::url).collect()
}

fn cluster(redis: &RedisProcess, n: usize) -> Vec<Node> {
    faulty_cluster(redis, n, None)
}

fn faulty_cluster(redis: &RedisProcess, n: usize, fault: Option<&str>) -> Vec<Node> {
    (0..n)
        .map(|i| Node::with_fault(&redis.url(), &format!("n{i}"), fault))
        .collect()
}

/// `loadgen conform` against `urls` with short deadlines: (exit code, JSON report).
fn conform(urls: &[String], only: &str) -> (i32, serde_json::Value) {
    let dir = TempDir::new("conform");
    let json = dir.path().join("conform.json");
    let output = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .arg("conform")
        .args(urls)
        .args([
            "--only",
            only,
            "--close-deadline",
            "1s",
            "--slow-stall",
            "2s",
        ])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .expect("loadgen conform runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let report = std::fs::read_to_string(&json)
        .map(|text| serde_json::from_str(&text).expect("conform JSON parses"))
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

/// The verdict of `rule`'s check in a conform report.
fn verdict(report: &serde_json::Value, rule: &str) -> String {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["rule"] == rule))
        .and_then(|c| c["verdict"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// Every check but R4 and R5 (R4 waits out the server's 10 s header timeout; R5 needs
/// --max-sessions): the MUST rules, checked across the nodes, and the cluster rules.
const ACROSS: &str = "S1,S2,S3,S4,S5,S6,S7,M1,M2,M3,M4,M5,M6,O1,R1,R2,R3,R6,R7,C2,C3";

#[test]
fn conform_across_three_nodes_passes_every_must_check() {
    let redis = redis();
    let nodes = cluster(&redis, 3);
    let urls = urls_of(&nodes);
    let (code, report) = conform(&urls, ACROSS);
    assert_eq!(code, 0, "{report}");
    for rule in ["S4", "S5", "S6", "M1", "M3", "M6", "C2", "C3"] {
        assert_eq!(verdict(&report, rule), "pass", "{rule}: {report}");
    }
}

/// A cluster whose nodes authenticate logins (every node holds the same key) behaves as
/// one server: every MUST rule across the nodes, with tokens, and A1–A5.
#[test]
fn conform_across_three_authenticated_nodes_passes_every_must_check() {
    let redis = redis();
    let dir = TempDir::new("cluster-auth");
    let secret = dir.path().join("secret");
    std::fs::write(
        &secret,
        "one secret for every node of this cluster, 32+ bytes",
    )
    .unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            Node::with_args(
                &redis.url(),
                &format!("n{i}"),
                &[["--jwt-secret-file", &secret]],
            )
        })
        .collect();
    let urls = urls_of(&nodes);
    let dir = TempDir::new("conform-auth");
    let json = dir.path().join("conform.json");
    let output = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .arg("conform")
        .args(&urls)
        .args(["--only", &format!("{ACROSS},A1,A2,A3,A4,A5")])
        .args(["--close-deadline", "1s", "--slow-stall", "2s"])
        .args(["--jwt-secret-file", &secret])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .expect("loadgen conform runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("a report")).expect("JSON");
    assert_eq!(output.status.code(), Some(0), "{report}");
    for rule in [
        "S4", "S5", "S6", "M1", "M3", "C2", "C3", "A1", "A2", "A3", "A4", "A5",
    ] {
        assert_eq!(verdict(&report, rule), "pass", "{rule}: {report}");
    }
    let refused: u64 = nodes
        .iter()
        .map(|n| n.metric("chat_refused_handshakes_total"))
        .sum();
    assert!(refused > 0, "the A-checks' bad tokens were refused");
}

#[test]
fn conform_c3_fails_on_nodes_that_evict_only_their_own_sessions() {
    let redis = redis();
    let nodes = faulty_cluster(&redis, 3, Some("local-eviction-only"));
    let urls = urls_of(&nodes);
    let (code, report) = conform(&urls, "C3,C2");
    assert_eq!(code, 1, "{report}");
    assert_eq!(verdict(&report, "C3"), "fail");
    assert_eq!(
        verdict(&report, "C2"),
        "pass",
        "only C3 is broken: {report}"
    );
}

#[test]
fn conform_c2_fails_on_nodes_that_reorder_what_they_publish() {
    let redis = redis();
    let nodes = faulty_cluster(&redis, 3, Some("bus-swap-pairs"));
    let urls = urls_of(&nodes);
    let (code, report) = conform(&urls, "C2,C3,M3");
    assert_eq!(code, 1, "{report}");
    assert_eq!(verdict(&report, "C2"), "fail");
    assert_eq!(
        verdict(&report, "C3"),
        "pass",
        "only C2 is broken: {report}"
    );
}

#[test]
fn conform_refuses_a_cluster_rule_with_one_url() {
    let (code, _) = conform(&["ws://127.0.0.1:9/".to_string()], "C2");
    assert_eq!(code, 2);
}

/// What a finished run left.
struct Report {
    code: i32,
    summary: serde_json::Value,
    /// timeseries.csv as (header, rows).
    rows: Vec<std::collections::HashMap<String, f64>>,
}

impl Report {
    fn total(&self, field: &str) -> u64 {
        self.summary["totals"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("totals.{field} in {}", self.summary))
    }

    /// Interval end times (s) where `field` is above zero.
    fn intervals_with(&self, field: &str) -> Vec<f64> {
        self.rows
            .iter()
            .filter(|row| row.get(field).copied().unwrap_or(0.0) > 0.0)
            .map(|row| row["elapsed_s"])
            .collect()
    }
}

/// Starts `loadgen run` of `scenario` against `urls`; `during` runs while it does.
fn run(tag: &str, scenario: &str, urls: &[String], during: impl FnOnce()) -> Report {
    let dir = TempDir::new(tag);
    let file = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("report");
    let mut command = Command::new(LOADGEN);
    command.env("LOADGEN_CALIBRATION", "quick");
    command.args([
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    for url in urls {
        command.args(["--target", url]);
    }
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadgen runs");
    during();
    let output = child.wait_with_output().expect("loadgen ends");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    read_report(&out, output.status.code().unwrap_or(-1))
}

fn read_report(out: &Path, code: i32) -> Report {
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|text| serde_json::from_str(&text).expect("summary.json parses"))
        .unwrap_or(serde_json::Value::Null);
    let mut rows = Vec::new();
    if let Ok(mut reader) = csv::Reader::from_path(out.join("timeseries.csv")) {
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        for record in reader.records() {
            let record = record.unwrap();
            rows.push(
                header
                    .iter()
                    .cloned()
                    .zip(record.iter().map(|v| v.parse().unwrap_or(0.0)))
                    .collect(),
            );
        }
    }
    Report {
        code,
        summary,
        rows,
    }
}

fn redis() -> RedisProcess {
    RedisProcess::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_relogin_storm_across_three_nodes_is_clean() {
    let redis = redis();
    let nodes = cluster(&redis, 3);
    let report = run(
        "clean",
        r#"
[users]
count = 60
connect_over = "300ms"
relogin_target = "next"

[[phase]]
duration = "5s"
rate = 40
senders = 12
relogin_rate = 6
relogin_concurrency = 2

[thresholds]
min_delivery_ratio = 1.0
max_eviction_failures = 0
max_order_errors = 0
max_duplicates = 0
"#,
        &urls_of(&nodes),
        || {},
    );
    assert_eq!(report.code, 0, "{}", report.summary);
    assert!(report.total("relogins") >= 15, "{}", report.summary);
    assert_eq!(report.total("lost"), 0);
    assert!(report.total("expected") > 1000);
    // Relogins went to the next node: the old sessions were evicted across the bus.
    let cross: u64 = nodes
        .iter()
        .map(|n| n.metric("chat_cross_node_evictions_total"))
        .sum();
    assert!(cross >= 15, "only {cross} cross-node evictions");
}

/// The resynchronisation bound the nodes state: backoff cap 1 s, two response timeouts of
/// 1 s, plus the reconnect itself.
const RESYNC_BOUND_S: f64 = 4.0;

#[test]
fn redis_stopped_for_five_seconds_shows_as_a_window_and_nothing_is_duplicated() {
    let mut redis = redis();
    let nodes = cluster(&redis, 3);
    let outage = Duration::from_secs(5);
    let mut stopped_at = None;
    let report = run(
        "outage",
        r#"
[users]
count = 45
connect_over = "300ms"
relogin_target = "next"

[verify]
eviction_deadline = "3s"
probe_deadline = "3s"

[[phase]]
duration = "14s"
rate = 30
senders = 9
relogin_rate = 2

[thresholds]
min_delivery_ratio = 0.0
max_connect_errors = 1000000
max_eviction_failures = 1000000
"#,
        &urls_of(&nodes),
        || {
            std::thread::sleep(Duration::from_secs(4));
            redis.stop();
            stopped_at = Some(Instant::now());
            std::thread::sleep(outage);
            redis.resume().unwrap_or_else(|e| panic!("{e}"));
        },
    );
    assert!(stopped_at.is_some());
    // Never a duplicate, never out of order, never a message from nowhere.
    for field in ["duplicates", "order_errors", "foreign", "self_deliveries"] {
        assert_eq!(report.total(field), 0, "{field}: {}", report.summary);
    }
    // The outage is in the report: messages that could not cross the bus are lost, and
    // relogins were refused, but only in one window of about the outage's length.
    let lost = report.intervals_with("lost");
    let refused = report.intervals_with("connect_errors");
    assert!(
        report.total("lost") > 0,
        "the outage left no trace: {}",
        report.summary
    );
    assert!(
        !refused.is_empty(),
        "no relogin was refused during the outage"
    );
    let window: Vec<f64> = lost.iter().chain(&refused).copied().collect();
    let first = window.iter().copied().fold(f64::MAX, f64::min);
    let last = window.iter().copied().fold(f64::MIN, f64::max);
    assert!(
        last - first <= 5.0 + 1.0 + RESYNC_BOUND_S,
        "loss or refusals from {first} s to {last} s: longer than the outage and its bounds"
    );
    // After the resync bound, relogins work again and are judged clean.
    let late_failures: Vec<f64> = [
        "evictions_late",
        "evictions_missing",
        "evictions_zombie",
        "evictions_ghost",
    ]
    .iter()
    .flat_map(|f| report.intervals_with(f))
    .filter(|&t| t > last + 1.0)
    .collect();
    assert!(
        late_failures.is_empty(),
        "eviction failures after the window: {late_failures:?}"
    );
    let ok_after = report
        .rows
        .iter()
        .filter(|row| row["elapsed_s"] > last)
        .map(|row| row["evictions_ok"])
        .sum::<f64>();
    assert!(ok_after >= 1.0, "no relogin succeeded after the outage");
    // The nodes counted what they could not forward and the logins they refused.
    let unforwarded: u64 = nodes
        .iter()
        .map(|n| n.metric("chat_bus_unforwarded_total"))
        .sum();
    let refused_logins: u64 = nodes
        .iter()
        .map(|n| n.metric("chat_refused_handshakes_total{server_id"))
        .sum();
    assert!(unforwarded > 0, "no unforwarded message counted");
    assert!(refused_logins > 0 || report.total("connect_errors") > 0);
    for node in &nodes {
        assert_eq!(
            node.metric("chat_bus_connected"),
            1,
            "a node did not reconnect"
        );
        assert!(node.metric("chat_bus_reconnects_total") >= 1);
    }
}

#[test]
fn a_node_killed_mid_run_costs_only_its_own_users_reported_as_disconnected() {
    let redis = redis();
    let mut nodes = cluster(&redis, 3);
    let urls = urls_of(&nodes);
    let victim = &mut nodes[2];
    let report = run(
        "kill",
        r#"
[users]
count = 30
connect_over = "300ms"

[[phase]]
duration = "8s"
rate = 30
senders = 9

[thresholds]
min_delivery_ratio = 1.0
"#,
        &urls,
        || {
            std::thread::sleep(Duration::from_secs(4));
            victim.kill();
        },
    );
    // Users 2, 5, …, 29 were on the killed node: 10 users, each disconnected once.
    assert_eq!(
        report.total("unexpected_disconnects"),
        10,
        "{}",
        report.summary
    );
    for field in [
        "lost",
        "duplicates",
        "order_errors",
        "foreign",
        "self_deliveries",
        "connect_errors",
    ] {
        assert_eq!(report.total(field), 0, "{field}: {}", report.summary);
    }
    assert_eq!(report.code, 0, "{}", report.summary);
}
