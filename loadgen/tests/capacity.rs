//! `loadgen capacity` end to end, against real servers on loopback: a search that holds to
//! its limit writes every file (the HTML well-formed, with its three charts); a server
//! that loses messages misses the objective at the first step and fails
//! `--expect-at-least`; a running server is measured through its `/metrics`; bad usage
//! exits 2 and an unreachable server 3. The knee search itself is tested against a
//! simulated system of known capacity in `capacity/search.rs`.

mod page_check;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Users grow 4, 8, 12 at 20 msg/s: light enough to hold everywhere.
const SMALL: &str = r#"
description = "tiny search for the tests"
[capacity]
grow = "users"
users = { start = 4, step = 4, limit = 12 }
warmup = "1s"
measure = "1s"
bisections = 1
confirm = 1
reproduce = 1
pause = "0s"
[load]
rate = 20
senders = 3
message_size = 100
[verify]
deadline = "500ms"
[thresholds]
p99 = "2s"
"#;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "loadgen-capacity-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn capacity(args: &[&str]) -> Output {
    let output = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .arg("capacity")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("loadgen runs");
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_search_that_holds_to_its_limit_writes_every_file() {
    let dir = temp_dir("held");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let output = capacity(&[&file, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("the limit of the search"), "{stdout}");

    let report = json(&out.join("capacity.json"));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        5,
        "4, 8, 12 users, then 12 again to confirm, and once more to reproduce"
    );
    assert_eq!(steps[3]["stage"], "confirm");
    assert_eq!(steps[4]["stage"], "reproduce");
    assert_eq!(report["outcome"]["kind"], "held-to-limit");
    assert_eq!(report["outcome"]["good"], 12.0);
    // p99 far below 2 s: the published capacity is the knee, with the default margin.
    assert_eq!(report["margin"], 0.7);
    assert_eq!(report["capacity"]["level"], 12.0);
    assert_eq!(report["capacity"]["runs"], 2);
    assert!(report["capacity"]["worst_latency_share"].as_f64().unwrap() < 0.7);
    let reproduction = report["reproduction"].as_array().unwrap();
    assert_eq!(reproduction.len(), 1, "{reproduction:?}");
    assert_eq!(reproduction[0]["load"], "knee");
    assert_eq!(reproduction[0]["met"], 1);
    // The machine was calibrated at the start and the end.
    let calibration = &report["calibration"];
    assert_eq!(calibration["mode"], "quick");
    for end in ["start", "end"] {
        assert!(calibration[end]["loopback_send_us"].as_f64().unwrap() > 0.0);
        assert!(calibration[end]["cpu_workload_ms"].as_f64().unwrap() > 0.0);
    }
    assert!(calibration["drift_percent"]["cpu_workload"].is_number());
    assert!(stdout.starts_with("capacity:"), "{stdout}");
    assert!(
        stdout.contains("Capacity: 12 users at 20 msg/s"),
        "{stdout}"
    );
    for step in steps {
        assert_eq!(step["met"], true, "{step}");
        assert_eq!(step["lost"], 0);
        assert!(step["achieved_deliveries_per_sec"].as_f64().unwrap() > 0.0);
        // The embedded server is a local process: its CPU and memory are read from /proc.
        assert!(
            step["server"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
            "{step}"
        );
        assert!(step["server"]["cpu_percent"].as_f64().is_some(), "{step}");
        assert!(step["loadgen"]["cpu_percent"].as_f64().is_some(), "{step}");
    }
    assert_eq!(report["server_usage_source"], "proc");

    // capacity.csv: a header and a row per step.
    let mut csv = csv::Reader::from_path(out.join("capacity.csv")).unwrap();
    assert_eq!(csv.records().count(), 5);

    // report.html: well-formed XML, three charts, no fetches.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let doc = page_check::parse(&html);
    assert_eq!(
        page_check::chart_ids(&doc),
        ["latency-chart", "throughput-chart", "resources-chart"]
    );
    page_check::assert_self_contained(&html);
    assert!(
        html.contains("id=\"reproduction\""),
        "the reproduction table"
    );
    assert!(html.contains("Machine calibration"));
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("the limit of the search"));
    assert!(markdown.contains("## Reproduction"), "{markdown}");
    assert!(
        markdown.contains("| knee | 12 | 20 | 1 of 1 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- **Machine calibration:** loopback send"),
        "{markdown}"
    );
    assert!(
        markdown.contains("- **Published capacity:** 12 users"),
        "{markdown}"
    );

    // capacity.toml runs the published capacity with a plain run.
    let knee = out.join("capacity.toml");
    assert!(out.join("knee.toml").exists());
    let run = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["run", knee.to_str().unwrap(), "--quiet", "--out"])
        .arg(dir.join("knee-run"))
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = json(&dir.join("knee-run/summary.json"));
    assert_eq!(summary["scenario"]["users"]["count"], 12);
    assert!(out.join("above-knee.toml").exists());
    // Each step's own run reports.
    let step_dirs = std::fs::read_dir(out.join("steps")).unwrap().count();
    assert_eq!(step_dirs, 5);

    // A report compared with itself: the same capacity on the same machine.
    let compared = capacity(&[
        "--compare",
        out.to_str().unwrap(),
        out.join("capacity.json").to_str().unwrap(),
    ]);
    assert_eq!(compared.status.code(), Some(0));
    let text = String::from_utf8_lossy(&compared.stdout);
    assert!(
        text.contains("| published capacity, users | 12 | 12 | 1.000 |"),
        "{text}"
    );
    assert!(text.contains("EXPLAINED"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A capacity.json with only what `--compare` reads.
fn saved(users: f64, send_us: f64, cpu_ms: f64) -> String {
    let speed = format!(
        r#"{{"at": "2026-11-26T07:00:00Z", "loopback_send_us": {send_us}, "cpu_workload_ms": {cpu_ms}}}"#
    );
    format!(
        r#"{{"name": "capacity", "level_unit": "users", "started_at": "2026-11-26T07:00:00Z",
            "cores": 2, "objective": ["p99 <= 25ms"], "margin": 0.7,
            "capacity": {{"level": {users}}},
            "calibration": {{"mode": "full", "start": {speed}, "end": {speed},
                             "drift_percent": {{"loopback_send": 0.0, "cpu_workload": 0.0}},
                             "drifted": false}}}}"#
    )
}

#[test]
fn compare_says_whether_the_machine_explains_the_difference() {
    let dir = temp_dir("compare");
    let a = write(&dir, "a.json", &saved(1000.0, 7.0, 800.0));
    // A machine 25% faster on both workloads, 27% more users: explained.
    let faster = write(&dir, "b.json", &saved(1270.0, 5.6, 640.0));
    let output = capacity(&["--compare", &a, &faster]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("EXPLAINED"));
    // The same machine speed and half the users: not explained, exit 1.
    let halved = write(&dir, "c.json", &saved(500.0, 7.0, 800.0));
    let output = capacity(&["--compare", &a, &halved]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("NOT EXPLAINED: B's capacity is -50.0% of A's"),
        "{text}"
    );
    // A report without a calibration, or not a report at all: exit 2, named.
    let bare = write(
        &dir,
        "d.json",
        r#"{"name": "x", "level_unit": "users", "started_at": "", "cores": 2, "capacity": {"level": 5}}"#,
    );
    let output = capacity(&["--compare", &a, &bare]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no machine calibration"));
    let junk = write(&dir, "e.json", "not json");
    let output = capacity(&["--compare", &a, &junk]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a capacity.json"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_search_with_workers_splits_every_step_and_its_knee_says_so() {
    let dir = temp_dir("workers");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let output = capacity(&[&file, "--workers", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&out.join("capacity.json"));
    let steps = report["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    for step in steps {
        assert_eq!(step["met"], true, "{step}");
        assert!(step["lost"].as_u64() == Some(0), "{step}");
    }
    // Every step ran as two workers; their CPU counts as loadgen's.
    let first = std::fs::read_dir(out.join("steps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    for i in 0..2 {
        assert!(first
            .join("segments")
            .join(i.to_string())
            .join("segment.json")
            .exists());
    }
    let summary = json(&first.join("summary.json"));
    assert_eq!(summary["segments"]["count"], 2);
    let knee = std::fs::read_to_string(out.join("knee.toml")).unwrap();
    assert!(knee.contains("workers = 2"), "{knee}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_lossy_server_misses_the_objective_at_the_first_step() {
    let dir = temp_dir("lossy");
    let file = write(&dir, "small.toml", SMALL);
    let out = dir.join("out");
    let server = format!("{LOADGEN} serve --listen {{addr}} --fault drop-every-7");
    let output = capacity(&[
        &file,
        "--server",
        &server,
        "--expect-at-least",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "capacity below the expectation"
    );
    let report = json(&out.join("capacity.json"));
    assert_eq!(report["outcome"]["kind"], "failed-at-start");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["met"], false);
    assert!(steps[0]["lost"].as_u64().unwrap() > 0);
    let failures = steps[0]["failures"].to_string();
    assert!(failures.contains("min_delivery_ratio"), "{failures}");
    let headline = report["conclusion"]["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("Misses the objective already"),
        "{headline}"
    );
    assert!(
        !out.join("knee.toml").exists(),
        "no knee, nothing to reproduce"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_running_server_is_measured_through_its_metrics() {
    let dir = temp_dir("metrics");
    let file = write(
        &dir,
        "small.toml",
        &SMALL.replace("limit = 12", "limit = 4"),
    );
    let mut server = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let out = dir.join("out");
    let output = capacity(&[
        &file,
        "--target",
        &format!("ws://{addr}/"),
        "--out",
        out.to_str().unwrap(),
    ]);
    drop(server.stdin.take());
    let _ = server.wait();
    assert_eq!(output.status.code(), Some(0));
    let report = json(&out.join("capacity.json"));
    assert_eq!(report["server_usage_source"], "metrics");
    let step = &report["steps"][0];
    assert!(
        step["server"]["rss_bytes"].as_u64().unwrap() > 1 << 20,
        "{step}"
    );
    assert!(step["server"]["cpu_percent"].as_f64().is_some(), "{step}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_usage_exits_2_and_an_unreachable_server_3() {
    let dir = temp_dir("usage");
    let file = write(&dir, "small.toml", SMALL);
    let bad = write(
        &dir,
        "bad.toml",
        "[capacity]\ngrow = \"users\"\n[load]\nrate = 5\n",
    );
    let out = dir.join("out");
    let out = out.to_str().unwrap();

    let output = capacity(&[&bad, "--out", out]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("capacity.users"));

    assert_eq!(capacity(&["no/such.toml"]).status.code(), Some(2));
    // A margin is a share of the limit: above 0 and at most 1.
    for margin in ["0", "1.5", "nan"] {
        let output = capacity(&[&file, "--margin", margin, "--out", out]);
        assert_eq!(output.status.code(), Some(2), "--margin {margin}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--margin"));
    }
    let in_file = write(
        &dir,
        "margin.toml",
        &SMALL.replace("reproduce = 1", "reproduce = 1\nmargin = 0"),
    );
    let output = capacity(&[&in_file, "--out", out]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("capacity.margin"));
    let output = capacity(&[&file, "--reproduce", "21", "--out", out]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--reproduce: at most 20"));
    // --compare takes two reports, and no capacity file beside them.
    assert_eq!(capacity(&["--compare", out]).status.code(), Some(2));
    assert_eq!(
        capacity(&[&file, "--compare", out, out]).status.code(),
        Some(2)
    );
    let no_addr = capacity(&[&file, "--server", "chat-server", "--out", out]);
    assert_eq!(no_addr.status.code(), Some(2));
    let pid_alone = capacity(&[&file, "--server-pid", "1", "--out", out]);
    assert_eq!(pid_alone.status.code(), Some(2));
    let huge = write(
        &dir,
        "huge.toml",
        &SMALL.replace("limit = 12", "limit = 100000"),
    );
    let too_many = capacity(&[&huge, "--out", out]);
    assert_eq!(too_many.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("may open only"));

    // Nothing listens on port 9 of loopback.
    let unreachable = capacity(&[&file, "--target", "ws://127.0.0.1:9/", "--out", out]);
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(
        Path::new(out).join("capacity.json").exists(),
        "the report is still written"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ctrl_c_stops_the_search_and_still_writes_the_report() {
    use std::io::BufRead;
    let dir = temp_dir("interrupt");
    let file = write(
        &dir,
        "small.toml",
        &SMALL.replace("limit = 12", "limit = 400"),
    );
    let out = dir.join("out");
    let mut child = Command::new(LOADGEN)
        .env("LOADGEN_CALIBRATION", "quick")
        .args(["capacity", &file, "--out", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first step's row, then interrupt the second step.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first_step = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.ends_with(" met"));
    assert!(first_step.is_some(), "a step ran");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{rest:?}");
    let report = json(&out.join("capacity.json"));
    let why = report["incomplete"].as_str().unwrap_or_default();
    assert!(why.contains("interrupted"), "{report}");
    let headline = report["conclusion"]["headline"].as_str().unwrap();
    assert!(headline.contains("cut short"), "{headline}");
    let _ = std::fs::remove_dir_all(dir);
}
